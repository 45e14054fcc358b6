//! `/health/live`, `/health/ready` and `/metrics`.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{
    ready,
    types::{LiveOut, ReadyOut},
};
use crate::{
    http::{AppError, Json},
    state::AppState,
};

/// 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "service", responses((status = 200, body = LiveOut)))]
pub(super) async fn live() -> Json<LiveOut> {
    Json(LiveOut { status: "ok" })
}

/// 200 when the database (and Redis, when configured) answer; 503 naming what failed.
#[utoipa::path(
    get, path = "/health/ready", tag = "service",
    responses(
        (status = 200, body = ReadyOut),
        (status = 503, description = "A dependency is down; `details` names it", body = crate::http::error::ErrorBody)
    )
)]
#[tracing::instrument(skip_all)]
pub(super) async fn ready(State(state): State<AppState>) -> Result<Json<ReadyOut>, AppError> {
    Ok(Json(ReadyOut { status: "ok", checks: ready::check(&state).await? }))
}

/// Prometheus text exposition. When `METRICS_TOKEN` is set, it must be presented as a bearer token.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "application/openmetrics-text"), (status = 401))
)]
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    ready::metrics_allowed(&state, &headers)?;
    let body = state.metrics.render();
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}
