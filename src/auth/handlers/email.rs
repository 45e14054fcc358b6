//! Email links: `/auth/password/forgot`, `/auth/password/reset`, `/auth/email/verify` and its
//! `resend`.

use axum::{extract::State, http::StatusCode};

use crate::{
    auth::{
        AuthUser, ClientMeta, password_reset,
        types::{ForgotIn, ResetIn, VerifyEmailIn},
        verify_email as verification,
    },
    http::{AppError, Json, Valid},
    state::AppState,
};

/// Sends a reset link when the address belongs to an account. Always 202, so the answer does
/// not tell whether an address is registered.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotIn,
    responses((status = 202), (status = 400), (status = 429)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn forgot(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ForgotIn>>,
) -> Result<StatusCode, AppError> {
    password_reset::forgot(&state, &input.email, &client).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sets a new password with a reset token. Every session of the account ends.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetIn,
    responses((status = 204), (status = 400)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn reset(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ResetIn>>,
) -> Result<StatusCode, AppError> {
    password_reset::reset(&state, &input.token, &input.new_password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Confirms the email address with the token from the verification mail.
#[utoipa::path(post, path = "/auth/email/verify", tag = "auth", request_body = VerifyEmailIn,
    responses((status = 204), (status = 400)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<VerifyEmailIn>>,
) -> Result<StatusCode, AppError> {
    verification::verify_email(&state, &input.token, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification mail to the signed-in user (202; 409 when already verified).
#[utoipa::path(post, path = "/auth/email/verify/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 401), (status = 409), (status = 429)))]
#[tracing::instrument(skip_all)]
pub(crate) async fn resend_verification(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
) -> Result<StatusCode, AppError> {
    verification::resend(&state, &me, &client).await?;
    Ok(StatusCode::ACCEPTED)
}
