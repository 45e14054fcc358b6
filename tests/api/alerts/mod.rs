//! Alert rules and alerts: every rule kind, the alert lifecycle and tenancy, with the job
//! queue driven by the test (`JOB_CONCURRENCY=0`, `run_jobs`) and time moved by the app's clock;
//! and the alert domain's functions called without HTTP (`domain.rs`).
//!
//! Time in these tests is the readings' own `ts` (a base an hour ago plus seconds), except for
//! `stale`, which compares with `app.state.clock`; readings for it are stamped with that clock.

mod anomaly;
mod domain;
mod evaluation;
mod kinds;
mod lifecycle;
mod rules;
mod workers;

use chrono::{DateTime, Duration, Utc};
use mash::{
    jobs::entity as job,
    realtime::hub::{Delivery, Outlet},
};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, get_authed, json_of},
    alerts::alert_path,
    greenhouse::{bearer, send_readings},
    quiet_app,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An app whose job queue the test drives.
async fn app() -> TestApp {
    quiet_app(&[]).await
}

/// A base for reading timestamps: an hour ago, so adding minutes stays in the past.
fn base() -> DateTime<Utc> {
    Utc::now() - Duration::hours(1)
}

async fn patch_rule(app: &TestApp, who: &Account, id: &Value, body: Value) -> reqwest::Response {
    authed(app, Method::PATCH, &rule_path(id), &who.access).json(&body).send().await.unwrap()
}

fn rule_path(id: &Value) -> String {
    format!("/api/v1/alert-rules/{}", id.as_str().expect("rule id"))
}

/// Posts readings (202 asserted) and runs every due job.
async fn send(app: &TestApp, who: &Account, items: Vec<Value>) {
    send_readings(app, &bearer(who), &items).await;
    app.run_jobs().await;
}

/// `GET {path}` for rules (a query included), 200 asserted.
async fn list_rules(app: &TestApp, who: &Account, path: &str) -> Value {
    json_of(get_authed(app, path, &who.access).await, 200).await
}

async fn get_alert(app: &TestApp, who: &Account, id: &Value) -> Value {
    json_of(get_authed(app, &alert_path(id), &who.access).await, 200).await
}

/// Subscribes to `/alerts/{grower}` on the app's realtime hub, as a connection would.
fn watch(app: &TestApp, grower_id: Uuid) -> Receiver<Delivery> {
    static CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX / 2);
    let (outlet, rx) = Outlet::new(4096);
    let conn = CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    app.state.realtime.hub.attach(&format!("/alerts/{grower_id}"), conn, &outlet, None);
    rx
}

/// The `data` of the `/alerts/{grower}` events published since the last call, in order.
fn alert_events(rx: &mut Receiver<Delivery>, grower_id: Uuid) -> Vec<Value> {
    let path = format!("/alerts/{grower_id}");
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        let message: Value = serde_json::from_str(&e.text).expect("an event is JSON");
        assert_eq!(message["type"], "event");
        if message["path"] == path.as_str() {
            out.push(message["data"].clone());
        }
    }
    out
}

fn changes(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["change"].as_str().expect("change")).collect()
}

/// How many `evaluate_readings` jobs are queued, and how many jobs in all.
async fn queued_jobs(app: &TestApp) -> (u64, u64) {
    let evaluations =
        job::Entity::find().filter(job::Column::JobType.eq("evaluate_readings")).count(&app.state.db).await.unwrap();
    let all = job::Entity::find().count(&app.state.db).await.unwrap();
    (evaluations, all)
}
