//! `/auth/mfa/*`: TOTP enrollment, activation and disabling, and the second login step.

use axum::{extract::State, http::StatusCode};

use crate::{
    auth::{
        AuthUser, ClientMeta, mfa,
        types::{BackupCodesOut, CodeIn, EnrollOut, VerifiedOut, VerifyIn},
    },
    http::{AppError, Json, Valid},
    state::AppState,
    users::UserOut,
};

/// Starts TOTP enrollment. Nothing changes for sign-in until `activate` confirms a code.
#[utoipa::path(post, path = "/auth/mfa/totp/enroll", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = EnrollOut), (status = 401), (status = 409, description = "MFA already on")))]
#[tracing::instrument(skip_all)]
pub(crate) async fn enroll(State(state): State<AppState>, me: AuthUser) -> Result<Json<EnrollOut>, AppError> {
    Ok(Json(mfa::enroll(&state, &me).await?))
}

/// Confirms enrollment with a current code: MFA is on from now, and ten backup codes are issued.
#[utoipa::path(post, path = "/auth/mfa/totp/activate", tag = "auth", security(("bearer" = [])), request_body = CodeIn,
    responses((status = 200, body = BackupCodesOut), (status = 400), (status = 401), (status = 409)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn activate(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<CodeIn>>,
) -> Result<Json<BackupCodesOut>, AppError> {
    let backup_codes = mfa::activate(&state, &me, &input.code, &client).await?;
    Ok(Json(BackupCodesOut { backup_codes }))
}

/// Turns MFA off; needs a current TOTP code or a backup code.
#[utoipa::path(post, path = "/auth/mfa/totp/disable", tag = "auth", security(("bearer" = [])), request_body = CodeIn,
    responses((status = 204), (status = 400), (status = 401), (status = 409)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn disable(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<CodeIn>>,
) -> Result<StatusCode, AppError> {
    mfa::disable(&state, &me, &input.code, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The second login step: `mfaToken` from `/auth/login` and a TOTP or backup code give the
/// tokens. The `mfaToken` works once and for five minutes; wrong codes count towards lockout.
#[utoipa::path(post, path = "/auth/mfa/verify", tag = "auth", request_body = VerifyIn,
    responses((status = 200, body = VerifiedOut), (status = 401), (status = 429)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<VerifyIn>>,
) -> Result<Json<VerifiedOut>, AppError> {
    let (u, tokens) = mfa::verify(&state, &input.mfa_token, &input.code, &client).await?;
    Ok(Json(VerifiedOut { user: UserOut::from(&u), tokens }))
}
