//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of drift either way) with replay
//! refusal, ten single-use backup codes, and the short-lived single-use `mfaToken` that
//! bridges password login and code verification. Secrets are encrypted at rest with
//! AES-256-GCM, bound to their user by the associated data.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use axum::{extract::State, http::StatusCode};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::Utc;
use garde::Validate;
use rand::RngCore;
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    AuthUser, ClientMeta,
    entity::{backup_code, mfa_challenge},
    secrets,
    sessions::{self, DeviceInfo, TokenPair},
};
use crate::{
    audit::{self, Entry},
    config::{Config, Environment},
    http::{AppError, Json, Valid},
    state::AppState,
    users::{UserOut, entity::user, find_live},
};

const ISSUER: &str = "Mash";
const CHALLENGE_TTL_SECS: i64 = 300;
const BACKUP_CODES: usize = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(activate))
        .routes(routes!(disable))
        .routes(routes!(verify))
}

/// Encrypts and decrypts TOTP secrets.
pub struct SecretBox(Aes256Gcm);

impl SecretBox {
    /// From `MFA_ENCRYPTION_KEY` (32 bytes, base64); in development a key is created once in
    /// the data directory.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let key_b64 = match (&config.auth.mfa_encryption_key, config.environment) {
            (Some(k), _) => k.expose().trim().to_string(),
            (None, Environment::Production) => anyhow::bail!("MFA_ENCRYPTION_KEY is required in production"),
            (None, Environment::Development) => {
                let dir = config.data_dir.join("keys");
                std::fs::create_dir_all(&dir)?;
                let path = dir.join("mfa.key");
                let (key, _) = crate::util::read_or_create_private(&path, || {
                    let mut key = [0u8; 32];
                    rand::rng().fill_bytes(&mut key);
                    Ok(STANDARD.encode(key))
                })?;
                key.trim().to_string()
            }
        };
        let bytes = STANDARD
            .decode(&key_b64)
            .map_err(|_| anyhow::anyhow!("invalid configuration: MFA_ENCRYPTION_KEY: not base64"))?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| anyhow::anyhow!("invalid configuration: MFA_ENCRYPTION_KEY: must decode to 32 bytes"))?;
        Ok(Self(cipher))
    }

    pub(crate) fn seal(&self, user_id: Uuid, plain: &[u8]) -> Result<String, AppError> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: user_id.as_bytes() })
            .map_err(|_| AppError::Internal(anyhow::anyhow!("encrypting an MFA secret failed")))?;
        Ok(STANDARD.encode([nonce.as_slice(), &sealed].concat()))
    }

    pub(crate) fn open(&self, user_id: Uuid, sealed: &str) -> Result<Vec<u8>, AppError> {
        let raw = STANDARD.decode(sealed).map_err(|e| AppError::Internal(e.into()))?;
        if raw.len() < 12 {
            return Err(AppError::Internal(anyhow::anyhow!("sealed MFA secret too short")));
        }
        let (nonce, body) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| AppError::Internal(anyhow::anyhow!("bad nonce")))?;
        self.0
            .decrypt(&Nonce::from(nonce), Payload { msg: body, aad: user_id.as_bytes() })
            .map_err(|_| AppError::Internal(anyhow::anyhow!("an MFA secret could not be decrypted (wrong key?)")))
    }
}

fn totp(secret: Vec<u8>, account: &str) -> Result<Totp, AppError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::from(secret))
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', ""))
        .build()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("building TOTP: {e:?}")))
}

fn now_secs() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// The step a TOTP code matches now (±1 step), if any.
fn matching_step(secret: Vec<u8>, account: &str, code: &str) -> Result<Option<u64>, AppError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret, account)?.check(code, now_secs()))
}

/// Accepts a TOTP code once: the step is recorded with a conditional update, so the same
/// code (or an older one) cannot be used again, even by two requests at the same moment.
async fn accept_totp<C: ConnectionTrait>(
    db: &C,
    boxed: &SecretBox,
    u: &user::Model,
    code: &str,
) -> Result<bool, AppError> {
    let Some(sealed) = u.totp_secret_enc.as_deref() else { return Ok(false) };
    let Some(step) = matching_step(boxed.open(u.id, sealed)?, &u.email, code)? else { return Ok(false) };
    let step = step as i64;
    let res = user::Entity::update_many()
        .col_expr(user::Column::TotpLastStep, Expr::value(step))
        .filter(user::Column::Id.eq(u.id))
        .filter(Condition::any().add(user::Column::TotpLastStep.is_null()).add(user::Column::TotpLastStep.lt(step)))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Accepts a backup code once (conditional update on `used_at`).
async fn accept_backup_code<C: ConnectionTrait>(db: &C, user_id: Uuid, code: &str) -> Result<bool, AppError> {
    let normalized = secrets::normalize_backup_code(code);
    if normalized.len() != 10 {
        return Ok(false);
    }
    let res = backup_code::Entity::update_many()
        .col_expr(backup_code::Column::UsedAt, Expr::value(Utc::now()))
        .filter(backup_code::Column::UserId.eq(user_id))
        .filter(backup_code::Column::CodeHash.eq(secrets::token_hash(&normalized)))
        .filter(backup_code::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A TOTP code or a backup code.
async fn accept_code<C: ConnectionTrait>(
    db: &C,
    boxed: &SecretBox,
    u: &user::Model,
    code: &str,
) -> Result<bool, AppError> {
    if accept_totp(db, boxed, u, code).await? {
        return Ok(true);
    }
    accept_backup_code(db, u.id, code).await
}

/// Starts the second login step: a single-use token valid for five minutes.
pub async fn start_challenge(state: &AppState, u: &user::Model, device: &DeviceInfo) -> Result<String, AppError> {
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollOut {
    /// Base32 secret, for manual entry in an authenticator app.
    pub secret: String,
    /// `otpauth://` URL, for a QR code.
    pub otpauth_url: String,
}

/// Starts TOTP enrollment. Nothing changes for sign-in until `activate` confirms a code.
#[utoipa::path(post, path = "/auth/mfa/totp/enroll", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = EnrollOut), (status = 401), (status = 409, description = "MFA already on")))]
#[tracing::instrument(skip_all)]
async fn enroll(State(state): State<AppState>, me: AuthUser) -> Result<Json<EnrollOut>, AppError> {
    let u = crate::users::load_signed_in(&state.db, &me).await?;
    if u.mfa_enabled {
        return Err(AppError::Conflict("MFA is already enabled; disable it first".into()));
    }
    let mut secret = vec![0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let t = totp(secret.clone(), &u.email)?;
    let otpauth_url = t.to_url().map_err(|e| AppError::Internal(anyhow::anyhow!("otpauth url: {e:?}")))?;
    let sealed = state.auth.mfa.seal(u.id, &secret)?;
    user::Entity::update_many()
        .col_expr(user::Column::TotpPendingEnc, Expr::value(sealed))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(u.id))
        .exec(&state.db)
        .await?;
    Ok(Json(EnrollOut { secret: Secret::from(secret).to_base32(), otpauth_url }))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct CodeIn {
    /// A 6-digit TOTP code (or, where accepted, a backup code).
    #[garde(length(min = 6, max = 32))]
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCodesOut {
    /// Ten single-use codes. Shown only now; store them safely.
    pub backup_codes: Vec<String>,
}

/// Confirms enrollment with a current code: MFA is on from now, and ten backup codes are issued.
#[utoipa::path(post, path = "/auth/mfa/totp/activate", tag = "auth", security(("bearer" = [])), request_body = CodeIn,
    responses((status = 200, body = BackupCodesOut), (status = 400), (status = 401), (status = 409)))]
#[tracing::instrument(skip_all)]
async fn activate(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<CodeIn>>,
) -> Result<Json<BackupCodesOut>, AppError> {
    let u = crate::users::load_signed_in(&state.db, &me).await?;
    if u.mfa_enabled {
        return Err(AppError::Conflict("MFA is already enabled".into()));
    }
    let Some(pending) = u.totp_pending_enc.as_deref() else {
        return Err(AppError::Conflict("start with /auth/mfa/totp/enroll".into()));
    };
    let Some(step) = matching_step(state.auth.mfa.open(u.id, pending)?, &u.email, &input.code)? else {
        return Err(AppError::invalid_field("code", "is not the current code"));
    };
    let codes: Vec<String> = (0..BACKUP_CODES).map(|_| secrets::backup_code()).collect();
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let updated = user::Entity::update_many()
        .col_expr(user::Column::MfaEnabled, Expr::value(true))
        .col_expr(user::Column::TotpSecretEnc, Expr::value(pending))
        .col_expr(user::Column::TotpPendingEnc, Expr::value(Option::<String>::None))
        .col_expr(user::Column::TotpLastStep, Expr::value(step as i64))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(u.id))
        .filter(user::Column::MfaEnabled.eq(false))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AppError::Conflict("MFA is already enabled".into()));
    }
    backup_code::Entity::delete_many().filter(backup_code::Column::UserId.eq(u.id)).exec(&txn).await?;
    backup_code::Entity::insert_many(codes.iter().map(|c| backup_code::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(u.id),
        code_hash: Set(secrets::token_hash(&secrets::normalize_backup_code(c))),
        used_at: Set(None),
        created_at: Set(now),
    }))
    .exec_without_returning(&txn)
    .await?;
    audit::record(&txn, Entry::new("mfa.enabled").by(Some(u.id)).on("user", u.id).client(&client)).await?;
    txn.commit().await?;
    Ok(Json(BackupCodesOut { backup_codes: codes }))
}

/// Turns MFA off; needs a current TOTP code or a backup code.
#[utoipa::path(post, path = "/auth/mfa/totp/disable", tag = "auth", security(("bearer" = [])), request_body = CodeIn,
    responses((status = 204), (status = 400), (status = 401), (status = 409)))]
#[tracing::instrument(skip_all)]
async fn disable(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<CodeIn>>,
) -> Result<StatusCode, AppError> {
    let u = crate::users::load_signed_in(&state.db, &me).await?;
    if !u.mfa_enabled {
        return Err(AppError::Conflict("MFA is not enabled".into()));
    }
    let txn = state.db.begin_write().await?;
    if !accept_code(&txn, &state.auth.mfa, &u, &input.code).await? {
        return Err(AppError::invalid_field("code", "is not a valid code"));
    }
    user::Entity::update_many()
        .col_expr(user::Column::MfaEnabled, Expr::value(false))
        .col_expr(user::Column::TotpSecretEnc, Expr::value(Option::<String>::None))
        .col_expr(user::Column::TotpPendingEnc, Expr::value(Option::<String>::None))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(u.id))
        .exec(&txn)
        .await?;
    backup_code::Entity::delete_many().filter(backup_code::Column::UserId.eq(u.id)).exec(&txn).await?;
    audit::record(&txn, Entry::new("mfa.disabled").by(Some(u.id)).on("user", u.id).client(&client)).await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyIn {
    #[garde(length(min = 1, max = 256))]
    pub mfa_token: String,
    /// A TOTP code or a backup code.
    #[garde(length(min = 6, max = 32))]
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedOut {
    pub user: UserOut,
    #[serde(flatten)]
    pub tokens: TokenPair,
}

/// The second login step: `mfaToken` from `/auth/login` and a TOTP or backup code give the
/// tokens. The `mfaToken` works once and for five minutes; wrong codes count towards lockout.
#[utoipa::path(post, path = "/auth/mfa/verify", tag = "auth", request_body = VerifyIn,
    responses((status = 200, body = VerifiedOut), (status = 401), (status = 429)))]
#[tracing::instrument(skip_all)]
async fn verify(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<VerifyIn>>,
) -> Result<Json<VerifiedOut>, AppError> {
    state.auth.abuse.check_client(state.redis.as_ref(), &client).await?;
    let invalid = || AppError::Unauthorized("invalid or expired MFA token".into());
    let hash = secrets::token_hash(&input.mfa_token);
    let Some(challenge) =
        mfa_challenge::Entity::find().filter(mfa_challenge::Column::TokenHash.eq(hash)).one(&state.db).await?
    else {
        return Err(invalid());
    };
    if challenge.expires_at <= Utc::now() {
        mfa_challenge::Entity::delete_by_id(challenge.id).exec(&state.db).await?;
        return Err(invalid());
    }
    let Some(u) = find_live(&state.db, challenge.user_id).await? else { return Err(invalid()) };
    if !sessions::is_active(&u) || !u.mfa_enabled {
        return Err(invalid());
    }
    let redis = state.redis.as_ref();
    state.auth.abuse.check_account(redis, &u.email).await?;
    let txn = state.db.begin_write().await?;
    if !accept_code(&txn, &state.auth.mfa, &u, &input.code).await? {
        txn.rollback().await?;
        audit::record(
            &state.db,
            Entry::new("auth.login_failed")
                .by(Some(u.id))
                .details(serde_json::json!({ "reason": "bad_mfa_code" }))
                .client(&client),
        )
        .await?;
        if let Some(locked) = state.auth.abuse.record_failure(redis, &u.email).await {
            mfa_challenge::Entity::delete_by_id(challenge.id).exec(&state.db).await?;
            return Err(locked);
        }
        return Err(AppError::Unauthorized("invalid code".into()));
    }
    // Single use: of two concurrent verifications, only the one that deletes the row goes on.
    let consumed = mfa_challenge::Entity::delete_by_id(challenge.id).exec(&txn).await?;
    if consumed.rows_affected != 1 {
        txn.rollback().await?;
        return Err(invalid());
    }
    txn.commit().await?;
    state.auth.abuse.record_success(redis, &u.email).await;
    let device: DeviceInfo = challenge.context.and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let tokens = sessions::start(&state, &u, &device, &client, "password+mfa").await?;
    Ok(Json(VerifiedOut { user: UserOut::from(&u), tokens }))
}
