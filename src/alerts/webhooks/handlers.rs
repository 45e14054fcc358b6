//! The `/growers/{id}/alert-webhook` handlers: owners (and ADMIN) set and remove the webhook,
//! members read it.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{WebhookIn, WebhookOut, set};
use crate::{
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, Json, Path, Valid},
    state::AppState,
};

/// Sets the grower's alert webhook (owners and ADMIN). The signing secret is returned when the
/// webhook is created or `rotateSecret` is true, and never again.
#[utoipa::path(put, path = "/growers/{id}/alert-webhook", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = WebhookIn,
    responses((status = 200, body = WebhookOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub(super) async fn put_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<WebhookIn>>,
) -> Result<Json<WebhookOut>, AppError> {
    access::grower(&state.db, &user, id, Need::Manage).await?;
    let (hook, secret) = set::set(&state, id.into(), input.into(), user.user_id.into(), &client).await?;
    Ok(Json(WebhookOut::of(&hook, secret)))
}

/// The grower's alert webhook, without its secret (members and ADMIN).
#[utoipa::path(get, path = "/growers/{id}/alert-webhook", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = WebhookOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub(super) async fn get_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<WebhookOut>, AppError> {
    access::grower(&state.db, &user, id, Need::Read).await?;
    Ok(Json(WebhookOut::of(&set::find(&state.db, id.into()).await?, None)))
}

/// Removes the grower's alert webhook (owners and ADMIN).
#[utoipa::path(delete, path = "/growers/{id}/alert-webhook", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub(super) async fn delete_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    access::grower(&state.db, &user, id, Need::Manage).await?;
    set::remove(&state, id.into(), user.user_id.into(), &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
