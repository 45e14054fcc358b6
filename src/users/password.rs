//! Password changes and resets: one path. The new hash goes in only for a live, enabled
//! account; the account's sessions end (all, or all but the caller's), with an audit row, in
//! the same transaction, and the revocations take effect before the answer.

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::{UserError, account::load_signed_in, entity::user};
use crate::{
    audit::{self, Entry},
    auth::{
        AuthUser, ClientMeta,
        sessions::{self, RevokeReason},
    },
    db::WriteTxn,
    ids::UserId,
    state::AppState,
};

/// Changes the caller's password after checking the current one; the caller's other sessions
/// end, this one stays.
pub async fn change(
    state: &AppState,
    me: &AuthUser,
    current_password: &str,
    new_password: &str,
    client: &ClientMeta,
) -> Result<(), UserError> {
    let u = load_signed_in(&state.db, me).await?;
    state.auth.passwords.check_policy("newPassword", new_password)?;
    if !state.auth.passwords.verify(current_password, u.password_hash.as_deref()).await? {
        return Err(UserError::WrongPassword);
    }
    let hash = state.auth.passwords.hash(new_password).await?;
    let txn = state.db.begin_write().await?;
    let (reason, action) = (RevokeReason::PasswordChanged, "user.password_changed");
    replace_password(state, txn, u.id.into(), hash, Some(me.session_id), reason, action, client).await
}

/// Sets a new password hash for a live, enabled account, ends its sessions (all, or all but
/// `keep`), writes the audit row, commits `txn` and makes the revocations effective.
/// [`UserError::GoneOrDisabled`] when the account is gone or disabled.
#[expect(clippy::too_many_arguments, reason = "one call site per flow; a struct would only rename the arguments")]
pub async fn replace_password(
    state: &AppState,
    txn: WriteTxn,
    user_id: UserId,
    hash: String,
    keep: Option<Uuid>,
    reason: RevokeReason,
    action: &str,
    client: &ClientMeta,
) -> Result<(), UserError> {
    let now = Utc::now();
    let updated = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .col_expr(user::Column::PasswordChangedAt, Expr::value(now))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::DeletedAt.is_null())
        .filter(user::Column::DisabledAt.is_null())
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(UserError::GoneOrDisabled);
    }
    let revoked = sessions::revoke_user_sessions(&txn, user_id, keep, reason).await?;
    audit::record(
        &txn,
        Entry::new(action)
            .by(Some(user_id.into()))
            .on("user", user_id)
            .details(serde_json::json!({ "sessionsRevoked": revoked.len() }))
            .client(client),
    )
    .await?;
    txn.commit().await?;
    sessions::announce(state, &revoked).await;
    Ok(())
}
