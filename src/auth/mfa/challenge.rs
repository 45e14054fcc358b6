//! The second login step: a correct password with MFA on gives a single-use `mfaToken` that
//! lives five minutes; it and a TOTP or backup code give the session. Wrong codes count
//! towards the account's lockout, and a lockout ends the challenge.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::codes::accept_code;
use crate::{
    auth::{
        AuthError, ClientMeta,
        entity::mfa_challenge,
        login::failure,
        secrets,
        sessions::{self, DeviceInfo},
        types::TokenPair,
    },
    state::AppState,
    users::{entity::user, find_live},
};

const CHALLENGE_TTL_SECS: i64 = 300;

/// Starts the second login step: a single-use token valid for five minutes.
pub async fn start_challenge(state: &AppState, u: &user::Model, device: &DeviceInfo) -> Result<String, AuthError> {
    let token = secrets::random_token();
    let now = Utc::now();
    mfa_challenge::Entity::insert(mfa_challenge::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(u.id),
        token_hash: Set(secrets::token_hash(&token)),
        context: Set(Some(serde_json::to_value(device).unwrap_or_default())),
        created_at: Set(now),
        expires_at: Set(now + chrono::Duration::seconds(CHALLENGE_TTL_SECS)),
    })
    .exec_without_returning(&state.db)
    .await?;
    Ok(token)
}

/// Completes the login started with `mfa_token` when `code` is a current TOTP or unused backup
/// code; the token is spent either way once the code passes.
pub async fn verify(
    state: &AppState,
    mfa_token: &str,
    code: &str,
    client: &ClientMeta,
) -> Result<(user::Model, TokenPair), AuthError> {
    state.auth.abuse.check_client(state.redis.as_ref(), client).await?;
    let hash = secrets::token_hash(mfa_token);
    let Some(challenge) =
        mfa_challenge::Entity::find().filter(mfa_challenge::Column::TokenHash.eq(hash)).one(&state.db).await?
    else {
        return Err(AuthError::InvalidMfaToken);
    };
    if challenge.expires_at <= Utc::now() {
        mfa_challenge::Entity::delete_by_id(challenge.id).exec(&state.db).await?;
        return Err(AuthError::InvalidMfaToken);
    }
    let Some(u) = find_live(&state.db, challenge.user_id).await? else { return Err(AuthError::InvalidMfaToken) };
    if !sessions::is_active(&u) || !u.mfa_enabled {
        return Err(AuthError::InvalidMfaToken);
    }
    let redis = state.redis.as_ref();
    state.auth.abuse.check_account(redis, &u.email).await?;
    let txn = state.db.begin_write().await?;
    if !accept_code(&txn, &state.auth.mfa, &u, code).await? {
        txn.rollback().await?;
        if let Some(locked) = failure(state, Some(u.id), &u.email, "bad_mfa_code", client).await? {
            mfa_challenge::Entity::delete_by_id(challenge.id).exec(&state.db).await?;
            return Err(locked);
        }
        return Err(AuthError::WrongMfaCode);
    }
    // Single use: of two concurrent verifications, only the one that deletes the row goes on.
    let consumed = mfa_challenge::Entity::delete_by_id(challenge.id).exec(&txn).await?;
    if consumed.rows_affected != 1 {
        txn.rollback().await?;
        return Err(AuthError::InvalidMfaToken);
    }
    txn.commit().await?;
    state.auth.abuse.record_success(redis, &u.email).await;
    let device: DeviceInfo = challenge.context.and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let tokens = sessions::start(state, &u, &device, client, "password+mfa").await?;
    Ok((u, tokens))
}
