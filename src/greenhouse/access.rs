//! Tenancy: who may do what in which grower. Every greenhouse route goes through here, so
//! no query on growers, chambers or devices runs without the caller's scope.
//!
//! - ADMIN reaches every grower.
//! - A GROWER reaches only the growers they are a member of. Members read everything and
//!   write telemetry and desired state; owners also manage members, chambers and devices.
//! - A grower one does not belong to answers 404, as if it did not exist, so ids cannot be
//!   probed. Being a member without enough rights answers 403.
//! - A check that cannot be made (the database is down) fails as such, never as a refusal.

use std::collections::HashSet;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

pub use super::entity::MemberRole;
use super::{
    entity::{device, grower, member},
    error::AccessError,
};
use crate::{
    auth::{AuthUser, roles::Permission},
    ids::{GrowerId, UserId},
};

/// What a route needs in a grower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// See the grower, its chambers, devices, state and history.
    Read,
    /// Send telemetry, set desired state.
    Write,
    /// Manage members, chambers and devices (owners and admins).
    Manage,
}

/// The caller's standing in a grower: `None` role means ADMIN acting from outside.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub role: Option<MemberRole>,
}

/// 403 for roles without greenhouse access at all (customers, vendors).
pub fn require_greenhouses(user: &AuthUser) -> Result<(), AccessError> {
    if user.role.can(Permission::UseGreenhouses) { Ok(()) } else { Err(AccessError::NoGreenhouses) }
}

/// Checks that `user` may do `need` in grower `grower_id`.
pub async fn grower<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    grower_id: Uuid,
    need: Need,
) -> Result<Standing, AccessError> {
    require_greenhouses(user)?;
    let not_found = || AccessError::NotFound("grower not found".into());
    let role = member_role(db, GrowerId(grower_id), UserId(user.user_id)).await?;
    if user.is_admin() {
        let exists =
            grower::Entity::find_by_id(grower_id).select_only().column(grower::Column::Id).into_tuple::<Uuid>();
        exists.one(db).await?.ok_or_else(not_found)?;
        return Ok(Standing { role });
    }
    let role = role.ok_or_else(not_found)?;
    if need == Need::Manage && role != MemberRole::Owner {
        return Err(AccessError::OwnersOnly);
    }
    Ok(Standing { role: Some(role) })
}

/// The role of `user_id` in `grower_id`, if they are a member.
pub async fn member_role<C: ConnectionTrait>(
    db: &C,
    grower_id: GrowerId,
    user_id: UserId,
) -> Result<Option<MemberRole>, DbErr> {
    member::Entity::find_by_id((grower_id.0, user_id.0))
        .select_only()
        .column(member::Column::Role)
        .into_tuple::<MemberRole>()
        .one(db)
        .await
}

/// Of `growers`, the ones `user` may write to (send telemetry, set desired state), in one
/// query: ADMIN all of them, a GROWER those they are a member of.
pub async fn writable_growers<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    growers: &HashSet<GrowerId>,
) -> Result<HashSet<GrowerId>, AccessError> {
    require_greenhouses(user)?;
    if user.is_admin() {
        return Ok(growers.clone());
    }
    if growers.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = member::Entity::find()
        .select_only()
        .column(member::Column::GrowerId)
        .filter(member::Column::UserId.eq(user.user_id))
        .filter(member::Column::GrowerId.is_in(growers.iter().map(|g| g.0)))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(GrowerId).collect())
}

/// The growers a caller may see: `None` means all of them (ADMIN).
pub async fn visible_growers<C: ConnectionTrait>(db: &C, user: &AuthUser) -> Result<Option<Vec<Uuid>>, AccessError> {
    require_greenhouses(user)?;
    if user.is_admin() {
        return Ok(None);
    }
    let ids = member::Entity::find()
        .select_only()
        .column(member::Column::GrowerId)
        .filter(member::Column::UserId.eq(user.user_id))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    Ok(Some(ids))
}

/// A live device the caller may `need`; 404 when it does not exist, is deleted, or belongs to
/// a grower the caller is not in.
pub async fn device<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    device_id: Uuid,
    need: Need,
) -> Result<device::Model, AccessError> {
    require_greenhouses(user)?;
    let not_found = "device not found";
    let d = find_live_device(db, device_id).await?.ok_or_else(|| AccessError::NotFound(not_found.into()))?;
    grower_of(db, user, d.grower_id, need, not_found).await?;
    Ok(d)
}

/// [`grower`] for something that belongs to a grower (a device, a rule, an alert): a grower the
/// caller is not in answers 404 `not_found`, naming the thing, never the grower.
pub async fn grower_of<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    grower_id: Uuid,
    need: Need,
    not_found: &str,
) -> Result<Standing, AccessError> {
    match grower(db, user, grower_id, need).await {
        Err(AccessError::NotFound(_)) => Err(AccessError::NotFound(not_found.into())),
        other => other,
    }
}

/// A device that exists and is not deleted, whoever asks.
pub async fn find_live_device<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<device::Model>, DbErr> {
    device::Entity::find_by_id(id).filter(device::Column::DeletedAt.is_null()).one(db).await
}
