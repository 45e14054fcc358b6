//! Forgotten passwords: a reset link goes to the address when it belongs to a live, enabled
//! account, and the answer never tells whether it does. Setting the new password ends every
//! session of the account.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    AuthError, ClientMeta,
    email::{self, Purpose},
    sessions::RevokeReason,
};
use crate::{
    audit::{self, Entry},
    state::AppState,
    users::{UserError, entity::user, normalize_email, replace_password},
};

/// Sends a reset link when `email` belongs to an account; silently does nothing otherwise.
pub async fn forgot(state: &AppState, email: &str, client: &ClientMeta) -> Result<(), AuthError> {
    state.auth.abuse.check_client(state.redis.as_ref(), client).await?;
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(normalize_email(email)))
        .filter(user::Column::DeletedAt.is_null())
        .filter(user::Column::DisabledAt.is_null())
        .one(&state.db)
        .await?;
    if let Some(u) = found {
        let txn = state.db.begin_write().await?;
        email::issue(&txn, state, &u, Purpose::PasswordReset).await?;
        audit::record(&txn, Entry::new("user.password_reset_requested").by(Some(u.id)).on("user", u.id).client(client))
            .await?;
        txn.commit().await?;
        state.jobs.wake();
    }
    Ok(())
}

/// Sets `new_password` with a reset token; every session of the account ends. A token whose
/// account was deleted or disabled since is as invalid as a used one.
pub async fn reset(state: &AppState, token: &str, new_password: &str, client: &ClientMeta) -> Result<(), AuthError> {
    state.auth.passwords.check_policy("newPassword", new_password)?;
    let hash = state.auth.passwords.hash(new_password).await?;
    let txn = state.db.begin_write().await?;
    let user_id = email::consume(&txn, token, Purpose::PasswordReset).await?;
    let replaced = replace_password(
        state,
        txn,
        user_id.into(),
        hash,
        None,
        RevokeReason::PasswordReset,
        "user.password_reset",
        client,
    )
    .await;
    match replaced {
        Err(UserError::GoneOrDisabled) => Err(AuthError::InvalidEmailToken),
        other => Ok(other?),
    }
}
