//! Signing up and in: `/auth/register`, `/auth/login`, `/auth/refresh`, `/auth/logout`.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{
    auth::{
        ClientMeta,
        login::{self, LoginOutcome},
        refresh as rotation, register as signup,
        types::{AuthOut, LoginIn, MfaRequiredOut, RefreshIn, RegisterIn, TokenPair},
    },
    http::{AppError, Json, Valid},
    state::AppState,
    users::UserOut,
};

/// Creates a CUSTOMER account and signs it in.
#[utoipa::path(
    post, path = "/auth/register", tag = "auth", request_body = RegisterIn,
    responses((status = 201, body = AuthOut), (status = 400), (status = 409, description = "email already registered"), (status = 429))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn register(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<RegisterIn>>,
) -> Result<impl IntoResponse, AppError> {
    let (u, tokens) = signup::register(&state, &input, &client).await?;
    Ok((StatusCode::CREATED, Json(AuthOut { user: UserOut::from(&u), tokens })))
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
pub(crate) async fn login(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<LoginIn>>,
) -> Result<Response, AppError> {
    Ok(match login::login(&state, &input, &client).await? {
        LoginOutcome::SignedIn(u, tokens) => Json(AuthOut { user: UserOut::from(&*u), tokens }).into_response(),
        LoginOutcome::MfaRequired(mfa_token) => Json(MfaRequiredOut { mfa_required: true, mfa_token }).into_response(),
    })
}

/// Rotates the refresh token: a new pair; the presented token stops working. Presenting an
/// already-rotated token revokes that whole session and answers 401.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshIn,
    responses((status = 200, body = TokenPair), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<RefreshIn>>,
) -> Result<Json<TokenPair>, AppError> {
    Ok(Json(rotation::refresh(&state, &input.refresh_token, &client).await?))
}

/// Ends the session of this refresh token: its refresh and access tokens stop working at once.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshIn,
    responses((status = 204), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<RefreshIn>>,
) -> Result<StatusCode, AppError> {
    rotation::logout(&state, &input.refresh_token, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
