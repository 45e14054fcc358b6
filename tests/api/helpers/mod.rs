//! What the tests share. Here: `spawn_app()`, the real application on port 0 against a fresh
//! database — a temporary SQLite file, or a fresh PostgreSQL database (created, and dropped
//! afterwards) when `MASH_TEST_DATABASE_URL` is set; the same test bodies run on both — and the
//! checks of the error shape. Below, by area: accounts, greenhouses and devices, telemetry
//! reads, the realtime clients, and the probe routes.

pub mod accounts;
pub mod alerts;
pub mod greenhouse;
pub mod probe;
pub mod rt_client;
pub mod shop;
pub mod telemetry;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use axum::{
    Router,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use mash::{AppState, Application, Config};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    /// Held so the database lives (and a PostgreSQL one is dropped) with the app.
    _db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request failed")
    }

    /// Runs every job that is due now (by the app's clock) until none is left; returns the
    /// number of runs. Start the app with `JOB_CONCURRENCY=0` so no worker races the test.
    pub async fn run_jobs(&self) -> usize {
        mash::jobs::run_pending(&self.state).await.expect("running due jobs")
    }

    /// Asks the server to stop (as SIGTERM would) and returns its task.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server running")
    }
}

/// A fresh database for one test; PostgreSQL databases are dropped when it goes away.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        match std::env::var("MASH_TEST_DATABASE_URL").ok().filter(|s| !s.is_empty()) {
            Some(admin_url) => {
                let name = format!("mash_test_{}", uuid::Uuid::now_v7().simple());
                let admin = Database::connect(&admin_url).await.expect("MASH_TEST_DATABASE_URL is set but unreachable");
                admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
                admin.close().await.ok();
                let mut url = url::Url::parse(&admin_url).expect("MASH_TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestDb { url: url.to_string(), _dir: None, pg: Some((admin_url, name)) }
            }
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("mash.db").display());
                TestDb { url, _dir: Some(dir), pg: None }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            // Drop cannot await; a short-lived runtime on its own thread does the cleanup.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ =
                            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                        admin.close().await.ok();
                    }
                });
            })
            .join();
        }
    }
}

/// Configuration for a test app: loopback, port 0, the given database, plus overrides.
pub fn test_config(db: &TestDb, overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into())),
        ("DB_MAX_CONNECTIONS".into(), "4".into()),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_map(&vars, false).expect("valid test config")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[], Router::new()).await
}

/// Starts the application with config overrides and extra routes under the same middleware.
pub async fn spawn_app_with(overrides: &[(&str, &str)], extra: Router<AppState>) -> TestApp {
    start(TestDb::new().await, overrides, extra).await
}

/// No background worker or scheduler: the test drives the job queue (`app.run_jobs()`).
pub const NO_WORKERS: &[(&str, &str)] = &[("JOB_CONCURRENCY", "0")];

/// An app with no background worker or scheduler (`NO_WORKERS`), plus `extra` overrides.
pub async fn quiet_app(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = NO_WORKERS.to_vec();
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides, Router::new()).await
}

impl TestApp {
    /// Another application on this app's database: a restart (after `begin_shutdown`) or a
    /// second instance. Keep `self` alive, it owns the database. Instances that must accept
    /// each other's tokens need the same `MASH_DATA_DIR` override (development keys live there).
    pub async fn spawn_sibling(&self, overrides: &[(&str, &str)]) -> TestApp {
        let borrowed = TestDb { url: self._db.url.clone(), _dir: None, pg: None };
        start(borrowed, overrides, Router::new()).await
    }
}

async fn start(db: TestDb, overrides: &[(&str, &str)], extra: Router<AppState>) -> TestApp {
    let config = test_config(&db, overrides);
    mash::logging::init(config.log_format, &config.log_level);
    let app = Application::build_with(config, extra).await.expect("application builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp { addr, client, state, _db: db, shutdown: Some(tx), server: Some(server) }
}

/// Asserts the contract's error shape and returns the body.
pub async fn assert_error(res: reqwest::Response, status: u16, path: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    let header_id = res.headers().get("x-request-id").expect("x-request-id").to_str().unwrap().to_owned();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: serde_json::Value = res.json().await.expect("JSON error body");
    assert_eq!(body["statusCode"], status, "{body}");
    assert!(body["error"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert!(body["message"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert_eq!(body["path"], path, "{body}");
    assert_eq!(body["requestId"], header_id.as_str(), "{body}");
    let ts = body["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339 timestamp");
    assert!(ts.ends_with('Z'), "UTC timestamp: {ts}");
    body
}

/// The Redis the suite may use (the machine's own by default).
pub fn redis_url() -> String {
    std::env::var("MASH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Two instances on one database and one Redis, sharing a data directory (so each accepts the
/// other's tokens), with `extra` overrides. Keep the returned directory alive with them.
pub async fn two_instances_on_redis(extra: &[(&str, &str)]) -> (TestApp, TestApp, tempfile::TempDir) {
    let redis = redis_url();
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap().to_string();
    let mut overrides = vec![
        ("REDIS_URL", redis.as_str()),
        ("MASH_DATA_DIR", dir.as_str()),
        // Redis counters are shared with anything else using this Redis.
        ("AUTH_RATE_LIMIT_PER_MINUTE", "100000"),
    ];
    overrides.extend_from_slice(extra);
    let a = spawn_app_with(&overrides, Router::new()).await;
    let b = a.spawn_sibling(&overrides).await;
    (a, b, data_dir)
}

/// The fields named in an error body's `details`, in order.
pub fn detail_fields(err: &Value) -> Vec<String> {
    err["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d["field"].as_str().map(str::to_string))
        .collect()
}

/// The fields named in an error body's `details`, each once, in the order first named.
pub fn distinct_detail_fields(err: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in detail_fields(err) {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// The ids of a list answer's `data`, in order.
pub fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().expect("data").iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
}

/// A timestamp of a JSON answer (an RFC 3339 string), in UTC.
pub fn ts_of(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("a timestamp string, got {v}"));
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("RFC 3339 {s}: {e}")).to_utc()
}

/// The text of `GET /metrics` (200 asserted).
pub async fn metrics_text(app: &TestApp) -> String {
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Fake servers the tests run (Stripe, FCM, webhook receivers)
// ---------------------------------------------------------------------------------------------

/// A header of a request a fake received, as text.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A fake's JSON answer; a JSON string is sent as an HTML page instead (what a front end answers).
pub fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    match body {
        Value::String(page) => (status, [("content-type", "text/html; charset=UTF-8")], page).into_response(),
        body => (status, axum::Json(body)).into_response(),
    }
}
