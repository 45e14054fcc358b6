//! The device registry: provisioning (with a token shown once), listing with presence,
//! changes and deletion. Owners (and ADMIN) manage devices; any member sees them. A device's
//! chamber is always one of its own grower's; a deleted device's token stops working at once
//! and it leaves every list, while its readings stay until retention removes them.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    tokens::{self, IssuedToken},
    types::DevicePatch,
};
use crate::{
    auth::{AuthUser, ClientMeta},
    db::Db,
    greenhouse::{
        DeviceStatus, GreenhouseError, GreenhouseState,
        access::{self, Need},
        audit,
        entity::device,
        growers::chambers,
    },
    http::PageRequest,
    ids::{ChamberId, GrowerId},
};

/// What a new device starts with.
pub struct NewDevice {
    pub grower_id: Uuid,
    pub chamber_id: Option<Uuid>,
    pub name: String,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    pub desired: Value,
}

/// The row of a new device with a freshly issued token (`desiredVersion` 1 when it starts
/// with a desired state, else 0).
pub fn new_device(new: NewDevice, token: &IssuedToken) -> device::ActiveModel {
    let now = Utc::now();
    let has_desired = new.desired.as_object().is_some_and(|o| !o.is_empty());
    device::ActiveModel {
        id: Set(Uuid::now_v7()),
        grower_id: Set(new.grower_id),
        chamber_id: Set(new.chamber_id),
        name: Set(new.name),
        kind: Set(new.kind),
        metadata: Set(new.metadata),
        token_id: Set(token.id.clone()),
        token_hash: Set(token.hash.clone()),
        token_rotated_at: Set(now),
        last_seen_at: Set(None),
        desired: Set(new.desired),
        desired_version: Set(i64::from(has_desired)),
        desired_updated_at: Set(has_desired.then_some(now)),
        reported_state: Set(None),
        reported_version: Set(None),
        reported_at: Set(None),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The grower of each live (not deleted) device matching `filter`.
pub async fn live_growers<C: ConnectionTrait>(
    db: &C,
    filter: impl sea_orm::sea_query::IntoCondition,
) -> Result<HashMap<Uuid, Uuid>, DbErr> {
    Ok(device::Entity::find()
        .select_only()
        .columns([device::Column::Id, device::Column::GrowerId])
        .filter(filter)
        .filter(device::Column::DeletedAt.is_null())
        .into_tuple::<(Uuid, Uuid)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// Provisions a device in a grower (owners and ADMIN): the device and its token, to show once.
pub async fn provision(
    db: &Db,
    me: &AuthUser,
    client: &ClientMeta,
    new: NewDevice,
) -> Result<(device::Model, IssuedToken), GreenhouseError> {
    let txn = db.begin_write().await?;
    access::grower(&txn, me, new.grower_id, Need::Manage).await?;
    check_chamber(&txn, GrowerId(new.grower_id), new.chamber_id.map(ChamberId)).await?;
    let token = tokens::issue();
    let d = new_device(new, &token).insert(&txn).await?;
    let details = serde_json::json!({ "growerId": d.grower_id, "name": d.name });
    audit::record(&txn, me, client, "device.created", ("device", d.id), Some(details)).await?;
    txn.commit().await?;
    Ok((d, token))
}

/// Which devices a list shows.
#[derive(Debug, Default)]
pub struct DeviceFilter {
    pub grower_id: Option<GrowerId>,
    pub chamber_id: Option<ChamberId>,
    pub status: Option<DeviceStatus>,
}

/// The live devices `me` can see that match `filter`, newest first, one page.
pub async fn list(
    db: &Db,
    presence: &GreenhouseState,
    me: &AuthUser,
    filter: &DeviceFilter,
    page: &PageRequest,
) -> Result<(Vec<device::Model>, u64), GreenhouseError> {
    let mut cond = Condition::all().add(device::Column::DeletedAt.is_null());
    match filter.grower_id {
        Some(g) => {
            access::grower(db, me, g.0, Need::Read).await?;
            cond = cond.add(device::Column::GrowerId.eq(g.0));
        }
        None => {
            if let Some(ids) = access::visible_growers(db, me).await? {
                cond = cond.add(device::Column::GrowerId.is_in(ids));
            }
        }
    }
    if let Some(c) = filter.chamber_id {
        cond = cond.add(device::Column::ChamberId.eq(c.0));
    }
    let since = presence.online_since();
    match filter.status {
        Some(DeviceStatus::Online) => cond = cond.add(device::Column::LastSeenAt.gte(since)),
        Some(DeviceStatus::Offline) => {
            cond = cond.add(
                Condition::any().add(device::Column::LastSeenAt.is_null()).add(device::Column::LastSeenAt.lt(since)),
            )
        }
        None => {}
    }
    let query = device::Entity::find().filter(cond);
    Ok(page.fetch(db, query, |q| q.order_by_desc(device::Column::CreatedAt).order_by_desc(device::Column::Id)).await?)
}

/// Changes a device's name, chamber, kind or metadata (owners and ADMIN).
pub async fn update(db: &Db, me: &AuthUser, id: Uuid, patch: DevicePatch) -> Result<device::Model, GreenhouseError> {
    let txn = db.begin_write().await?;
    let d = access::device(&txn, me, id, Need::Manage).await?;
    let grower_id = GrowerId(d.grower_id);
    let mut active: device::ActiveModel = d.into();
    if let Some(name) = patch.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(chamber_id) = patch.chamber_id {
        check_chamber(&txn, grower_id, chamber_id.map(ChamberId)).await?;
        active.chamber_id = Set(chamber_id);
    }
    if let Some(kind) = patch.kind {
        active.kind = Set(kind.map(|k| k.trim().to_string()));
    }
    if let Some(metadata) = patch.metadata {
        active.metadata = Set(metadata);
    }
    active.updated_at = Set(Utc::now());
    let d = active.update(&txn).await?;
    txn.commit().await?;
    Ok(d)
}

/// Deletes a device (owners and ADMIN): its token stops working at once and it leaves every
/// list. Its readings stay until retention removes them.
pub async fn delete(db: &Db, me: &AuthUser, client: &ClientMeta, id: Uuid) -> Result<(), GreenhouseError> {
    let txn = db.begin_write().await?;
    let d = access::device(&txn, me, id, Need::Manage).await?;
    let now = Utc::now();
    device::Entity::update_many()
        .col_expr(device::Column::DeletedAt, Expr::value(now))
        .col_expr(device::Column::UpdatedAt, Expr::value(now))
        .filter(device::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    let details = serde_json::json!({ "growerId": d.grower_id, "name": d.name });
    audit::record(&txn, me, client, "device.deleted", ("device", id), Some(details)).await?;
    txn.commit().await?;
    Ok(())
}

/// A device's chamber, when it has one, must be a chamber of its grower (422 otherwise).
async fn check_chamber<C: ConnectionTrait>(
    db: &C,
    grower_id: GrowerId,
    chamber_id: Option<ChamberId>,
) -> Result<(), GreenhouseError> {
    let Some(chamber_id) = chamber_id else { return Ok(()) };
    match chambers::find_in(db, grower_id, chamber_id).await? {
        Some(_) => Ok(()),
        None => Err(GreenhouseError::NoSuchChamber),
    }
}
