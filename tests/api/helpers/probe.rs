//! Probe routes mounted under the real middleware stack, to check the HTTP conventions that
//! later domain routes rely on (validation, path parsing, body limits, panics, timeouts, lists).

use std::time::Duration;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use mash::{
    AppState,
    http::{Json, ListParams, Page, Path, Query, Valid},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct ProbeIn {
    #[garde(length(chars, min = 1, max = 10))]
    pub name: String,
    #[garde(email)]
    pub email: String,
    #[garde(range(min = 1, max = 5))]
    pub count: u32,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    pub page: ListParams,
    pub total: Option<String>,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/probe/echo", post(|Valid(Json(body)): Valid<Json<ProbeIn>>| async move { Json(body) }))
        .route("/api/v1/probe/items/{id}", get(|Path(id): Path<uuid::Uuid>| async move { Json(serde_json::json!({ "id": id })) }))
        .route(
            "/api/v1/probe/big",
            post(|Json(v): Json<serde_json::Value>| async move { Json(serde_json::json!({ "len": v.to_string().len() })) })
                .layer(DefaultBodyLimit::max(8 * 1024 * 1024)),
        )
        .route("/api/v1/probe/panic", get(panicking))
        .route(
            "/api/v1/probe/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        )
        .route("/api/v1/probe/large-response", get(|| async { "x".repeat(4096) }))
        .route("/api/v1/probe/tiny-response", get(|| async { "ok" }))
        .route(
            "/api/v1/probe/list",
            get(|Query(q): Query<ListQuery>| async move {
                let req = q.page.validate()?;
                let total: u64 = q.total.as_deref().unwrap_or("53").parse().unwrap_or(53);
                let data: Vec<u64> = (req.offset()..total).take(req.limit as usize).collect();
                Ok::<_, mash::http::AppError>(Json(Page::new(data, &req, total)))
            }),
        )
}

async fn panicking() -> &'static str {
    let secret = std::hint::black_box("hunter2");
    panic!("probe panic with a secret: {secret}")
}
