//! Members of a grower: owners add GROWER (or ADMIN) users, change their roles and remove
//! them. A grower keeps at least one owner: the last one can be neither demoted nor removed,
//! except by an ADMIN (who reaches every grower anyway).

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    auth::{AuthUser, ClientMeta, Permission},
    db::{Db, WriteTxn},
    greenhouse::{
        GreenhouseError,
        access::{self, Need},
        audit,
        entity::{MemberRole, grower, member},
    },
    http::PageRequest,
    ids::{GrowerId, UserId},
    users::entity::user,
};

/// A membership and the member's account.
pub type Member = (member::Model, user::Model);

/// Adds `user_id` to a grower with `role` (owners and ADMIN). 409 when they already are a
/// member (roles change with [`change_role`]).
pub async fn add(
    db: &Db,
    me: &AuthUser,
    client: &ClientMeta,
    grower_id: GrowerId,
    user_id: UserId,
    role: MemberRole,
) -> Result<Member, GreenhouseError> {
    let txn = db.begin_write().await?;
    access::grower(&txn, me, grower_id.0, Need::Manage).await?;
    let u = crate::users::find_live(&txn, user_id.0).await?.ok_or(GreenhouseError::NoSuchUser)?;
    if !u.role.can(Permission::UseGreenhouses) {
        return Err(GreenhouseError::NotAGrowerUser);
    }
    if access::member_role(&txn, grower_id, user_id).await?.is_some() {
        return Err(GreenhouseError::AlreadyMember);
    }
    let m = member::ActiveModel {
        grower_id: Set(grower_id.0),
        user_id: Set(user_id.0),
        role: Set(role),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    let details = json!({ "userId": user_id, "role": role });
    audit::record(&txn, me, client, "grower.member_added", ("grower", grower_id.0), Some(details)).await?;
    txn.commit().await?;
    Ok((m, u))
}

/// The members of a grower (any member, or ADMIN), oldest first, one page.
pub async fn list(
    db: &Db,
    me: &AuthUser,
    grower_id: GrowerId,
    page: &PageRequest,
) -> Result<(Vec<Member>, u64), GreenhouseError> {
    access::grower(db, me, grower_id.0, Need::Read).await?;
    let query = member::Entity::find().filter(member::Column::GrowerId.eq(grower_id.0));
    let (rows, total) = page
        .fetch(db, query, |q| q.order_by_asc(member::Column::CreatedAt).order_by_asc(member::Column::UserId))
        .await?;
    let mut users: HashMap<Uuid, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(rows.iter().map(|m| m.user_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let members = rows
        .into_iter()
        .map(|m| {
            let u = users.remove(&m.user_id).ok_or(GreenhouseError::NotFound("user"))?;
            Ok((m, u))
        })
        .collect::<Result<Vec<_>, GreenhouseError>>()?;
    Ok((members, total))
}

/// Changes a member's role (owners and ADMIN). The last owner cannot be demoted.
pub async fn change_role(
    db: &Db,
    me: &AuthUser,
    client: &ClientMeta,
    grower_id: GrowerId,
    user_id: UserId,
    role: MemberRole,
) -> Result<Member, GreenhouseError> {
    let txn = db.begin_write().await?;
    let m = find_managed(&txn, me, grower_id, user_id).await?;
    if role == MemberRole::Member && m.role == MemberRole::Owner {
        keep_an_owner(&txn, me, grower_id, user_id).await?;
    }
    let mut active: member::ActiveModel = m.into();
    active.role = Set(role);
    let m = active.update(&txn).await?;
    let details = json!({ "userId": user_id, "role": role });
    audit::record(&txn, me, client, "grower.member_updated", ("grower", grower_id.0), Some(details)).await?;
    let u = user::Entity::find_by_id(user_id.0).one(&txn).await?.ok_or(GreenhouseError::NotFound("user"))?;
    txn.commit().await?;
    Ok((m, u))
}

/// Removes a member (owners and ADMIN). The last owner cannot be removed.
pub async fn remove(
    db: &Db,
    me: &AuthUser,
    client: &ClientMeta,
    grower_id: GrowerId,
    user_id: UserId,
) -> Result<(), GreenhouseError> {
    let txn = db.begin_write().await?;
    let m = find_managed(&txn, me, grower_id, user_id).await?;
    if m.role == MemberRole::Owner {
        keep_an_owner(&txn, me, grower_id, user_id).await?;
    }
    member::Entity::delete_by_id((grower_id.0, user_id.0)).exec(&txn).await?;
    let details = json!({ "userId": user_id });
    audit::record(&txn, me, client, "grower.member_removed", ("grower", grower_id.0), Some(details)).await?;
    txn.commit().await?;
    Ok(())
}

/// The membership of `user_id` in a grower `me` manages.
async fn find_managed(
    txn: &WriteTxn,
    me: &AuthUser,
    grower_id: GrowerId,
    user_id: UserId,
) -> Result<member::Model, GreenhouseError> {
    access::grower(txn, me, grower_id.0, Need::Manage).await?;
    member::Entity::find_by_id((grower_id.0, user_id.0)).one(txn).await?.ok_or(GreenhouseError::NotFound("member"))
}

/// Fails when `user_id` is the last owner of `grower_id` and the change would leave none
/// (an admin may still do it).
async fn keep_an_owner<C: ConnectionTrait>(
    db: &C,
    me: &AuthUser,
    grower_id: GrowerId,
    user_id: UserId,
) -> Result<(), GreenhouseError> {
    if me.is_admin() {
        return Ok(());
    }
    // Two owners demoting or removing each other at once must not both see the other as the
    // remaining owner: they queue on the grower's row.
    crate::db::for_update(grower::Entity::find_by_id(grower_id.0)).one(db).await?;
    let other_owners = member::Entity::find()
        .filter(member::Column::GrowerId.eq(grower_id.0))
        .filter(member::Column::Role.eq(MemberRole::Owner))
        .filter(member::Column::UserId.ne(user_id.0))
        .count(db)
        .await?;
    if other_owners == 0 {
        return Err(GreenhouseError::LastOwner);
    }
    Ok(())
}
