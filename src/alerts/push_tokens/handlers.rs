//! The `/push-tokens` handlers: each caller manages their own push targets.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    PushTokenIn, PushTokenOut,
    tokens::{self, Registered},
};
use crate::{
    auth::AuthUser,
    http::{AppError, Json, Path},
    state::AppState,
};

/// Registers a push target for the caller: 201 when new, 200 when the token was already
/// registered (it is now the caller's, with this platform).
#[utoipa::path(post, path = "/push-tokens", tag = "alerts", security(("bearer" = [])), request_body = PushTokenIn,
    responses((status = 201, body = PushTokenOut), (status = 200, body = PushTokenOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    Json(input): Json<PushTokenIn>,
) -> Result<(StatusCode, Json<PushTokenOut>), AppError> {
    let (row, registered) = tokens::register(&state, user.user_id.into(), &input.token, input.platform).await?;
    let status = match registered {
        Registered::New => StatusCode::CREATED,
        Registered::Known => StatusCode::OK,
    };
    Ok((status, Json(PushTokenOut::from(&row))))
}

/// The caller's push targets.
#[utoipa::path(get, path = "/push-tokens", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, body = Vec<PushTokenOut>), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn list(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<PushTokenOut>>, AppError> {
    let rows = tokens::of_user(&state.db, user.user_id.into()).await?;
    Ok(Json(rows.iter().map(PushTokenOut::from).collect()))
}

/// Removes one of the caller's push targets (sign-out on that device). 404 for another user's.
#[utoipa::path(delete, path = "/push-tokens/{id}", tag = "alerts", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(push_token_id = %id))]
pub(super) async fn unregister(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    tokens::unregister(&state.db, user.user_id.into(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
