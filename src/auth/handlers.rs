//! `/auth/*` routes: register, login, refresh, logout, sessions; and the JWKS.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use chrono::Utc;
use garde::Validate;
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{ExprTrait, OnConflict},
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    AuthUser, ClientMeta, Role,
    entity::{session, user_device},
    keys::JwkSet,
    sessions::{self, DeviceInfo, RevokeReason, TokenPair},
};
use crate::{
    audit::{self, Entry},
    http::{AppError, Json, Path, Valid},
    state::AppState,
    users::{UserOut, entity::user, normalize_email},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(list_sessions))
        .routes(routes!(delete_session))
}

/// Served at the root, beside the other service endpoints.
pub fn well_known() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// Public keys that verify access tokens (current and previous).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = JwkSet)))]
async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.auth.keys.jwks().clone())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterIn {
    /// Surrounding whitespace is dropped before validation (emails are stored trimmed and
    /// lower-cased), so `" Ada@Example.com "` is the same account as `ada@example.com`.
    #[garde(email, length(max = 320))]
    #[serde(deserialize_with = "trimmed")]
    pub email: String,
    /// At least 8 characters, not a common password.
    #[garde(skip)]
    pub password: String,
    #[garde(length(chars, min = 1, max = 200), custom(crate::users::not_blank))]
    pub name: String,
    #[garde(length(max = 128))]
    pub device_id: Option<String>,
    #[garde(length(max = 128))]
    pub device_name: Option<String>,
}

fn trimmed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.trim().to_string())
}

/// Signed in: the user and their tokens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthOut {
    pub user: UserOut,
    #[serde(flatten)]
    pub tokens: TokenPair,
}

/// Creates a CUSTOMER account and signs it in.
#[utoipa::path(
    post, path = "/auth/register", tag = "auth", request_body = RegisterIn,
    responses((status = 201, body = AuthOut), (status = 400), (status = 409, description = "email already registered"), (status = 429))
)]
#[tracing::instrument(skip_all)]
async fn register(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<RegisterIn>>,
) -> Result<impl IntoResponse, AppError> {
    state.auth.abuse.check_client(state.redis.as_ref(), &client).await?;
    state.auth.passwords.check_policy("password", &input.password)?;
    let email = normalize_email(&input.email);
    let hash = state.auth.passwords.hash(&input.password).await?;
    let id = Uuid::now_v7();
    let row = crate::users::NewUser {
        email,
        name: &input.name,
        role: Role::Customer,
        password_hash: Some(hash),
        email_verified: false,
        external: None,
    }
    .into_active(id);
    let txn = state.db.begin_write().await?;
    // ON CONFLICT DO NOTHING: a duplicate email is a clean 409, never a race between check and insert.
    let inserted = user::Entity::insert(row)
        .on_conflict(OnConflict::column(user::Column::Email).do_nothing().to_owned())
        .exec_without_returning(&txn)
        .await?;
    if inserted == 0 {
        return Err(AppError::Conflict("email already registered".into()));
    }
    audit::record(&txn, Entry::new("user.register").by(Some(id)).on("user", id).client(&client)).await?;
    let u = user::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| anyhow::anyhow!("user vanished"))?;
    super::email::queue_verification(&txn, &state, &u).await?;
    txn.commit().await?;
    state.jobs.wake();
    let device = DeviceInfo { device_id: input.device_id, device_name: input.device_name };
    let tokens = sessions::start(&state, &u, &device, &client, "register").await?;
    Ok((StatusCode::CREATED, Json(AuthOut { user: UserOut::from(&u), tokens })))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginIn {
    #[garde(length(min = 1, max = 320))]
    pub email: String,
    #[garde(length(min = 1, max = 1024))]
    pub password: String,
    #[garde(length(max = 128))]
    pub device_id: Option<String>,
    #[garde(length(max = 128))]
    pub device_name: Option<String>,
}

/// The second step is needed: present `mfaToken` and a code to `/auth/mfa/verify`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaRequiredOut {
    pub mfa_required: bool,
    pub mfa_token: String,
}

/// Signs in with email and password. Wrong credentials are 401 with one message whether or
/// not the email exists; repeated failures lock the account's password login (429).
#[utoipa::path(
    post, path = "/auth/login", tag = "auth", request_body = LoginIn,
    responses(
        (status = 200, description = "Signed in (`AuthOut`), or `MfaRequiredOut` when MFA is on", body = AuthOut),
        (status = 401), (status = 429, description = "locked or rate limited; see Retry-After")
    )
)]
#[tracing::instrument(skip_all)]
async fn login(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<LoginIn>>,
) -> Result<axum::response::Response, AppError> {
    state.auth.abuse.check_client(state.redis.as_ref(), &client).await?;
    let email = normalize_email(&input.email);
    let redis = state.redis.as_ref();
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
            audit::record(
                &state.db,
                Entry::new("auth.login_failed")
                    .by(other.as_ref().map(|u| u.id))
                    .details(serde_json::json!({ "reason": if ok { "disabled" } else { "bad_credentials" } }))
                    .client(&client),
            )
            .await?;
            if let Some(locked) = state.auth.abuse.record_failure(redis, &email).await {
                return Err(locked);
            }
            return Err(AppError::Unauthorized("invalid email or password".into()));
        }
    };
    let device = DeviceInfo { device_id: input.device_id, device_name: input.device_name };
    if u.mfa_enabled {
        // Not a success yet: the failure count (wrong codes included) clears only when the
        // second step passes, or logging in again between guesses would reset it.
        let mfa_token = super::mfa::start_challenge(&state, &u, &device).await?;
        return Ok(Json(MfaRequiredOut { mfa_required: true, mfa_token }).into_response());
    }
    state.auth.abuse.record_success(redis, &email).await;
    let tokens = sessions::start(&state, &u, &device, &client, "password").await?;
    Ok(Json(AuthOut { user: UserOut::from(&u), tokens }).into_response())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshIn {
    #[garde(length(min = 1, max = 256))]
    pub refresh_token: String,
}

/// Rotates the refresh token: a new pair; the presented token stops working. Presenting an
/// already-rotated token revokes that whole session and answers 401.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshIn,
    responses((status = 200, body = TokenPair), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<RefreshIn>>,
) -> Result<Json<TokenPair>, AppError> {
    Ok(Json(sessions::refresh(&state, &input.refresh_token, &client).await?))
}

/// Ends the session of this refresh token: its refresh and access tokens stop working at once.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshIn,
    responses((status = 204), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn logout(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<RefreshIn>>,
) -> Result<StatusCode, AppError> {
    let hash = super::secrets::token_hash(&input.refresh_token);
    let Some(rt) = super::entity::refresh_token::Entity::find()
        .filter(super::entity::refresh_token::Column::TokenHash.eq(hash))
        .one(&state.db)
        .await?
    else {
        return Err(AppError::Unauthorized("invalid refresh token".into()));
    };
    let txn = state.db.begin_write().await?;
    let ids = sessions::revoke_where(&txn, session::Column::Id.eq(rt.session_id), RevokeReason::Logout).await?;
    audit::record(&txn, Entry::new("auth.logout").by(Some(rt.user_id)).on("session", rt.session_id).client(&client))
        .await?;
    txn.commit().await?;
    sessions::announce(&state, &ids).await;
    Ok(StatusCode::NO_CONTENT)
}

/// One of the caller's sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionOut {
    pub id: Uuid,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub last_used_at: chrono::DateTime<Utc>,
    pub expires_at: chrono::DateTime<Utc>,
    /// The session of the token making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionsOut {
    pub data: Vec<SessionOut>,
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionsOut), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn list_sessions(State(state): State<AppState>, me: AuthUser) -> Result<Json<SessionsOut>, AppError> {
    let now = Utc::now();
    let rows = session::Entity::find()
        .filter(session::Column::UserId.eq(me.user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now))
        .order_by_desc(session::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let device_ids: Vec<Uuid> = rows.iter().filter_map(|s| s.user_device_id).collect();
    let devices: std::collections::HashMap<Uuid, user_device::Model> = if device_ids.is_empty() {
        Default::default()
    } else {
        user_device::Entity::find()
            .filter(user_device::Column::Id.is_in(device_ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect()
    };
    let data = rows
        .into_iter()
        .map(|s| {
            let d = s.user_device_id.and_then(|id| devices.get(&id));
            SessionOut {
                id: s.id,
                device_id: d.map(|d| d.device_id.clone()),
                device_name: d.and_then(|d| d.device_name.clone()),
                ip_address: s.ip_address,
                user_agent: s.user_agent,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
                current: s.id == me.session_id,
            }
        })
        .collect();
    Ok(Json(SessionsOut { data }))
}

/// Ends one of the caller's sessions (another device, or this one).
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(session_id = %id))]
async fn delete_session(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let txn = state.db.begin_write().await?;
    // Scoped to the caller: another user's session id is simply not found.
    let ids = sessions::revoke_where(
        &txn,
        session::Column::Id.eq(id).and(session::Column::UserId.eq(me.user_id)),
        RevokeReason::Deleted,
    )
    .await?;
    if ids.is_empty() {
        return Err(AppError::NotFound("session not found".into()));
    }
    audit::record(&txn, Entry::new("auth.session_deleted").by(Some(me.user_id)).on("session", id).client(&client))
        .await?;
    txn.commit().await?;
    sessions::announce(&state, &ids).await;
    Ok(StatusCode::NO_CONTENT)
}
