//! Tenancy: who may do what in which grower. Every greenhouse route goes through here, so
//! no query on growers, chambers or devices runs without the caller's scope.
//!
//! - ADMIN reaches every grower.
//! - A GROWER reaches only the growers they are a member of. Members read everything and
//!   write telemetry and desired state; owners also manage members, chambers and devices.
//! - A grower one does not belong to answers 404, as if it did not exist, so ids cannot be
//!   probed. Being a member without enough rights answers 403.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::{device, grower, member};
use crate::{
    auth::{AuthUser, roles::Permission},
    http::AppError,
};

/// A member's role inside one grower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum MemberRole {
    Owner,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "OWNER",
            MemberRole::Member => "MEMBER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OWNER" => Some(MemberRole::Owner),
            "MEMBER" => Some(MemberRole::Member),
            _ => None,
        }
    }
}

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
pub fn require_greenhouses(user: &AuthUser) -> Result<(), AppError> {
    user.require(Permission::UseGreenhouses)
}

/// Checks that `user` may do `need` in grower `grower_id`.
pub async fn grower<C: ConnectionTrait>(
    db: &C,
    user: &AuthUser,
    grower_id: Uuid,
    need: Need,
) -> Result<Standing, AppError> {
    require_greenhouses(user)?;
    let not_found = || AppError::NotFound("grower not found".into());
    if user.is_admin() {
        let exists =
            grower::Entity::find_by_id(grower_id).select_only().column(grower::Column::Id).into_tuple::<Uuid>();
        exists.one(db).await?.ok_or_else(not_found)?;
        let role = member_role(db, grower_id, user.user_id).await?;
        return Ok(Standing { role });
    }
    let role = member_role(db, grower_id, user.user_id).await?.ok_or_else(not_found)?;
    if need == Need::Manage && role != MemberRole::Owner {
        return Err(AppError::Forbidden("only the grower's owners may do this".into()));
    }
    Ok(Standing { role: Some(role) })
}

/// The caller's role in a grower, if they are a member.
pub async fn member_role<C: ConnectionTrait>(
    db: &C,
    grower_id: Uuid,
    user_id: Uuid,
) -> Result<Option<MemberRole>, AppError> {
    let role = member::Entity::find_by_id((grower_id, user_id))
        .select_only()
        .column(member::Column::Role)
        .into_tuple::<String>()
        .one(db)
        .await?;
    Ok(role.as_deref().and_then(MemberRole::parse))
}

/// The growers a caller may see: `None` means all of them (ADMIN).
pub async fn visible_growers<C: ConnectionTrait>(db: &C, user: &AuthUser) -> Result<Option<Vec<Uuid>>, AppError> {
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
) -> Result<device::Model, AppError> {
    require_greenhouses(user)?;
    let d = find_live_device(db, device_id).await?.ok_or_else(|| AppError::NotFound("device not found".into()))?;
    grower_of(db, user, d.grower_id, need, "device not found").await?;
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
) -> Result<Standing, AppError> {
    match grower(db, user, grower_id, need).await {
        Err(AppError::NotFound(_)) => Err(AppError::NotFound(not_found.into())),
        other => other,
    }
}

pub async fn find_live_device<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<device::Model>, sea_orm::DbErr> {
    device::Entity::find_by_id(id).filter(device::Column::DeletedAt.is_null()).one(db).await
}
