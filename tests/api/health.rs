//! CONTRACT.md "Service endpoints": liveness, readiness (database and Redis), metrics.

use axum::Router;
use serde_json::Value;

use crate::helpers::{assert_error, probe, redis_url, spawn_app, spawn_app_with};

#[tokio::test]
async fn live_and_ready_answer_200() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    assert_eq!(res.status(), 200);
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert!(body["checks"].get("redis").is_none(), "redis is not checked unless configured");
}

#[tokio::test]
async fn ready_is_503_naming_the_database_when_it_is_gone() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    // Take the database away from under the running server.
    app.state.db.clone().close().await.unwrap();
    let res = app.get("/health/ready").await;
    let body = assert_error(res, 503, "/health/ready").await;
    assert_eq!(body["details"][0]["field"], "database", "{body}");
    assert!(body["message"].as_str().unwrap().contains("database"));
    // Liveness is about the process, not its dependencies.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn ready_checks_redis_when_configured() {
    let app = spawn_app_with(&[("REDIS_URL", &redis_url())], Router::new()).await;
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["redis"], "ok", "{body}");

    // A Redis nobody listens on: not ready, and the answer says it is Redis.
    let app = spawn_app_with(&[("REDIS_URL", "redis://127.0.0.1:1")], Router::new()).await;
    let res = app.get("/health/ready").await;
    let body = assert_error(res, 503, "/health/ready").await;
    let failed: Vec<&str> = body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(failed, ["redis"], "{body}");
}

#[tokio::test]
async fn metrics_use_route_templates_not_raw_paths() {
    let app = spawn_app_with(&[], probe::routes()).await;
    let ids = [uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
    for id in ids {
        assert_eq!(app.get(&format!("/api/v1/probe/items/{id}")).await.status(), 200);
    }
    app.get("/api/v1/probe/items/not-a-uuid").await;
    app.get("/some/random/path/1").await;
    app.get("/some/random/path/2").await;

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/api/v1/probe/items/{id}",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"http_requests_total{method="GET",route="/api/v1/probe/items/{id}",status="400"} 1"#));
    assert!(text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 2"#), "{text}");
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(text.contains(
        r#"http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/probe/items/{id}",status="200"}"#
    ));
    for id in ids {
        assert!(!text.contains(&id.to_string()), "raw ids must not become labels");
    }
    assert!(!text.contains("/some/random/path"));
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let app = spawn_app_with(&[("METRICS_TOKEN", "scrape-secret")], Router::new()).await;
    assert_error(app.get("/metrics").await, 401, "/metrics").await;
    let res = app.client.get(app.url("/metrics")).bearer_auth("wrong").send().await.unwrap();
    assert_error(res, 401, "/metrics").await;
    let res = app.client.get(app.url("/metrics")).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(res.status(), 200);
}
