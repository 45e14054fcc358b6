//! Service endpoints for orchestrators and operators: liveness, readiness, metrics.

use std::time::Duration;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;

use crate::{
    http::{AppError, Json, error::FieldError},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready)).routes(routes!(metrics))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveOut {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "service", responses((status = 200, body = LiveOut)))]
async fn live() -> Json<LiveOut> {
    Json(LiveOut { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadyOut {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Each dependency checked, with `ok`.
    pub checks: std::collections::BTreeMap<&'static str, &'static str>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the database (and Redis, when configured) answer; 503 naming what failed.
#[utoipa::path(
    get, path = "/health/ready", tag = "service",
    responses(
        (status = 200, body = ReadyOut),
        (status = 503, description = "A dependency is down; `details` names it", body = crate::http::error::ErrorBody)
    )
)]
#[tracing::instrument(skip_all)]
async fn ready(State(state): State<AppState>) -> Result<Json<ReadyOut>, AppError> {
    let db = async { tokio::time::timeout(CHECK_TIMEOUT, crate::db::ping(&state.db)).await };
    let redis = async {
        match &state.redis {
            None => None,
            Some(r) => Some(tokio::time::timeout(CHECK_TIMEOUT, r.ping()).await),
        }
    };
    let (db, redis) = tokio::join!(db, redis);
    let mut checks = std::collections::BTreeMap::new();
    let mut failed = Vec::new();
    match db {
        Ok(Ok(())) => {
            checks.insert("database", "ok");
        }
        Ok(Err(e)) => failed.push(FieldError::new("database", format!("down: {}", first_line(&e.to_string())))),
        Err(_) => failed.push(FieldError::new("database", "down: no answer within 2s")),
    }
    match redis {
        None => {}
        Some(Ok(Ok(()))) => {
            checks.insert("redis", "ok");
        }
        Some(Ok(Err(e))) => failed.push(FieldError::new("redis", format!("down: {}", first_line(&e.to_string())))),
        Some(Err(_)) => failed.push(FieldError::new("redis", "down: no answer within 2s")),
    }
    if failed.is_empty() {
        return Ok(Json(ReadyOut { status: "ok", checks }));
    }
    let names: Vec<&str> = failed.iter().map(|f| f.field.as_str()).collect();
    let message = format!("not ready: {} unavailable", names.join(" and "));
    tracing::warn!(%message, "readiness check failed");
    Err(AppError::UnavailableWith { message, details: failed })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Prometheus text exposition. When `METRICS_TOKEN` is set, it must be presented as a bearer token.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "application/openmetrics-text"), (status = 401))
)]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Some(token) = &state.config.metrics_token {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let ok = presented.is_some_and(|p| crate::util::constant_time_eq(p.as_bytes(), token.expose().as_bytes()));
        if !ok {
            return Err(AppError::Unauthorized("a valid metrics token is required".into()));
        }
    }
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
