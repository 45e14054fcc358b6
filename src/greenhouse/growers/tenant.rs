//! Growers themselves: created by ADMIN, renamed by owners, seen by their members (and ADMIN).
//! Every answer carries the caller's own role in the grower.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::{
    auth::{AuthUser, ClientMeta},
    db::Db,
    greenhouse::{
        GreenhouseError,
        access::{self, Need},
        audit,
        entity::{MemberRole, grower, member},
    },
    http::PageRequest,
};

/// A grower and the caller's role in it (`None` for an ADMIN who is not a member).
pub type Seen = (grower::Model, Option<MemberRole>);

/// Creates a grower (the caller is an ADMIN; the extractor checked it). It has no members yet.
pub async fn create(
    db: &Db,
    admin: &AuthUser,
    client: &ClientMeta,
    name: &str,
) -> Result<grower::Model, GreenhouseError> {
    let now = Utc::now();
    let txn = db.begin_write().await?;
    let g = grower::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.trim().to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let details = serde_json::json!({ "name": g.name });
    audit::record(&txn, admin, client, "grower.created", ("grower", g.id), Some(details)).await?;
    txn.commit().await?;
    Ok(g)
}

/// The growers `me` belongs to (every grower for ADMIN), by name, one page.
pub async fn list(db: &Db, me: &AuthUser, page: &PageRequest) -> Result<(Vec<Seen>, u64), GreenhouseError> {
    let mut query = grower::Entity::find();
    if let Some(ids) = access::visible_growers(db, me).await? {
        query = query.filter(grower::Column::Id.is_in(ids));
    }
    let (rows, total) =
        page.fetch(db, query, |q| q.order_by_asc(grower::Column::Name).order_by_asc(grower::Column::Id)).await?;
    let roles: HashMap<Uuid, MemberRole> = member::Entity::find()
        .select_only()
        .columns([member::Column::GrowerId, member::Column::Role])
        .filter(member::Column::UserId.eq(me.user_id))
        .filter(member::Column::GrowerId.is_in(rows.iter().map(|g| g.id)))
        .into_tuple::<(Uuid, MemberRole)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let seen = rows.into_iter().map(|g| {
        let role = roles.get(&g.id).copied();
        (g, role)
    });
    Ok((seen.collect(), total))
}

/// One grower `me` may read.
pub async fn get(db: &Db, me: &AuthUser, id: Uuid) -> Result<Seen, GreenhouseError> {
    let standing = access::grower(db, me, id, Need::Read).await?;
    Ok((find(db, id).await?, standing.role))
}

/// Renames a grower (owners and ADMIN).
pub async fn rename(
    db: &Db,
    me: &AuthUser,
    client: &ClientMeta,
    id: Uuid,
    name: &str,
) -> Result<Seen, GreenhouseError> {
    let txn = db.begin_write().await?;
    let standing = access::grower(&txn, me, id, Need::Manage).await?;
    let mut active: grower::ActiveModel = find(&txn, id).await?.into();
    active.name = Set(name.trim().to_string());
    active.updated_at = Set(Utc::now());
    let g = active.update(&txn).await?;
    let details = serde_json::json!({ "name": g.name });
    audit::record(&txn, me, client, "grower.updated", ("grower", id), Some(details)).await?;
    txn.commit().await?;
    Ok((g, standing.role))
}

async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<grower::Model, GreenhouseError> {
    grower::Entity::find_by_id(id).one(db).await?.ok_or(GreenhouseError::NotFound("grower"))
}
