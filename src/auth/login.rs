//! Sign-in with email and password. Wrong credentials answer the same whether or not the email
//! exists (an unknown email is checked against a dummy hash, so both take as long); failures
//! count towards the account's lockout, which only a completed sign-in clears. With MFA on,
//! the password alone gives a one-time `mfaToken`, not a session.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{AuthError, ClientMeta, mfa, sessions, types::LoginIn};
use crate::{
    audit::{self, Entry},
    state::AppState,
    users::{entity::user, normalize_email},
};

/// What a correct password leads to.
pub enum LoginOutcome {
    SignedIn(Box<user::Model>, super::types::TokenPair),
    /// MFA is on: the token for the second step.
    MfaRequired(String),
}

/// Checks the password of `input.email` and signs in (or starts the MFA step).
pub async fn login(state: &AppState, input: &LoginIn, client: &ClientMeta) -> Result<LoginOutcome, AuthError> {
    let redis = state.redis.as_ref();
    state.auth.abuse.check_client(redis, client).await?;
    let email = normalize_email(&input.email);
    state.auth.abuse.check_account(redis, &email).await?;
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .filter(user::Column::DeletedAt.is_null())
        .one(&state.db)
        .await?;
    let ok =
        state.auth.passwords.verify(&input.password, found.as_ref().and_then(|u| u.password_hash.as_deref())).await?;
    let u = match found {
        Some(u) if ok && u.disabled_at.is_none() => u,
        other => {
            let reason = if ok { "disabled" } else { "bad_credentials" };
            let locked = failure(state, other.as_ref().map(|u| u.id), &email, reason, client).await?;
            return Err(locked.unwrap_or(AuthError::BadCredentials));
        }
    };
    if u.mfa_enabled {
        // Not a success yet: the failure count (wrong codes included) clears only when the
        // second step passes, or logging in again between guesses would reset it.
        return Ok(LoginOutcome::MfaRequired(mfa::start_challenge(state, &u, &input.device()).await?));
    }
    state.auth.abuse.record_success(redis, &email).await;
    let tokens = sessions::start(state, &u, &input.device(), client, "password").await?;
    Ok(LoginOutcome::SignedIn(Box::new(u), tokens))
}

/// Records a failed sign-in step: its audit row, and a failure towards the account's lockout.
/// `Some` lockout error when this failure locks the account.
pub(super) async fn failure(
    state: &AppState,
    user_id: Option<uuid::Uuid>,
    email: &str,
    reason: &str,
    client: &ClientMeta,
) -> Result<Option<AuthError>, AuthError> {
    let entry =
        Entry::new("auth.login_failed").by(user_id).details(serde_json::json!({ "reason": reason })).client(client);
    audit::record(&state.db, entry).await?;
    Ok(state.auth.abuse.record_failure(state.redis.as_ref(), email).await)
}
