//! Managing users (ADMIN): list and search, change role, name or disabled state, soft-delete.
//! A role change, a disable or a delete ends the user's sessions at once, so no token keeps old
//! rights; an admin can neither demote, disable nor delete themselves.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use uuid::Uuid;

use super::{
    UserError, UserOut,
    account::find_live,
    entity::user,
    types::{UserListQuery, UserPatch},
};
use crate::{
    audit::{self, Entry},
    auth::{
        AuthUser, ClientMeta, Role,
        sessions::{self, RevokeReason},
    },
    http::PageRequest,
    ids::UserId,
    state::AppState,
};

/// Which users a list shows: live ones, of a role, matching a search.
pub fn filter(q: &UserListQuery) -> Result<Condition, UserError> {
    let mut cond = Condition::all().add(user::Column::DeletedAt.is_null());
    if let Some(role) = q.role.as_deref().filter(|r| !r.is_empty()) {
        let role = Role::from_name(role).ok_or(UserError::UnknownRole)?;
        cond = cond.add(user::Column::Role.eq(role));
    }
    if let Some(search) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if search.len() > 100 {
            return Err(UserError::SearchTooLong);
        }
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        let lower = |c: user::Column| Expr::expr(Func::lower(Expr::col(c)));
        cond = cond.add(
            Condition::any()
                .add(lower(user::Column::Email).like(LikeExpr::new(pattern.clone()).escape('\\')))
                .add(lower(user::Column::Name).like(LikeExpr::new(pattern).escape('\\'))),
        );
    }
    Ok(cond)
}

/// `%`, `_` and `\` in a search term match themselves.
fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// One page of the users `q` selects, newest first, and how many it selects in all.
pub async fn list(state: &AppState, q: &UserListQuery, page: &PageRequest) -> Result<(Vec<UserOut>, u64), UserError> {
    let query = user::Entity::find().filter(filter(q)?);
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_desc(user::Column::CreatedAt).order_by_desc(user::Column::Id))
        .await?;
    Ok((rows.iter().map(UserOut::from).collect(), total))
}

/// Applies `input` to user `id` as `admin`: each change audited, sessions ended by a role change
/// or a disable.
pub async fn update(
    state: &AppState,
    admin: &AuthUser,
    id: UserId,
    input: &UserPatch,
    client: &ClientMeta,
) -> Result<UserOut, UserError> {
    if Uuid::from(id) == admin.user_id && (input.disabled == Some(true) || input.role.is_some_and(|r| r != Role::Admin))
    {
        return Err(UserError::SelfDemotion);
    }
    let txn = state.db.begin_write().await?;
    let u = find_live(&txn, id.into()).await?.ok_or(UserError::NotFound)?;
    let mut active: user::ActiveModel = u.clone().into();
    let mut revoke = None;
    let mut events = Vec::new();
    if let Some(name) = &input.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(role) = input.role.filter(|r| *r != u.role) {
        active.role = Set(role);
        revoke = Some(RevokeReason::RoleChanged);
        events.push(("user.role_changed", serde_json::json!({ "from": u.role, "to": role })));
    }
    match input.disabled {
        Some(true) if u.disabled_at.is_none() => {
            active.disabled_at = Set(Some(Utc::now()));
            revoke = Some(RevokeReason::Disabled);
            events.push(("user.disabled", serde_json::json!({})));
        }
        Some(false) if u.disabled_at.is_some() => {
            active.disabled_at = Set(None);
            events.push(("user.enabled", serde_json::json!({})));
        }
        _ => {}
    }
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    let revoked = match revoke {
        Some(reason) => sessions::revoke_user_sessions(&txn, id, None, reason).await?,
        None => Vec::new(),
    };
    if input.name.is_some() && u.name != updated.name {
        events.push(("user.updated", serde_json::json!({ "name": updated.name })));
    }
    for (action, details) in events {
        let entry = Entry::new(action).by(Some(admin.user_id)).on("user", id).details(details);
        audit::record(&txn, entry.client(client)).await?;
    }
    txn.commit().await?;
    sessions::announce(state, &revoked).await;
    Ok(UserOut::from(&updated))
}

/// Soft-deletes user `id` as `admin`: they disappear from lists and cannot sign in; their
/// sessions end at once. The email stays reserved.
pub async fn delete(state: &AppState, admin: &AuthUser, id: UserId, client: &ClientMeta) -> Result<(), UserError> {
    if Uuid::from(id) == admin.user_id {
        return Err(UserError::SelfDeletion);
    }
    let txn = state.db.begin_write().await?;
    let now = Utc::now();
    let res = user::Entity::update_many()
        .col_expr(user::Column::DeletedAt, Expr::value(now))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(UserError::NotFound);
    }
    let revoked = sessions::revoke_user_sessions(&txn, id, None, RevokeReason::UserDeleted).await?;
    audit::record(&txn, Entry::new("user.deleted").by(Some(admin.user_id)).on("user", id).client(client)).await?;
    txn.commit().await?;
    sessions::announce(state, &revoked).await;
    Ok(())
}
