//! Notifications: FCM push against a fake FCM and OAuth2 token server, signed webhooks, alert
//! email, and push-token registration.
//!
//! The fakes run in the test on 127.0.0.1 and record every request. The fake FCM is also the
//! OAuth2 token endpoint: like Google's, it verifies the JWT-bearer grant (RS256 signature with
//! the public half of `tests/fixtures/fcm-test-key.pem`, `kid`, `iss`, `aud`, `scope`, `iat` and
//! `exp`) before it issues an access token, and it only accepts messages carrying a token it
//! issued. The webhook receiver checks `Mash-Signature` itself, with the secret the API showed.
//! Jobs are driven by the test (`JOB_CONCURRENCY=0`, `run_jobs`), so every call to a fake
//! happens inside `run_jobs`, and retries become due by moving the app's clock.

mod email;
mod fake_fcm;
mod push;
mod push_tokens;
mod webhook_receiver;
mod webhooks;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use mash::{
    alerts::entity::delivery,
    jobs::{entity as job, queue},
};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, json_of},
    alerts::{alerts_of, deliveries_by, new_rule},
    greenhouse::{Device, Greenhouse, bearer, reading, send_readings},
};

// ---------------------------------------------------------------------------------------------
// Shared steps
// ---------------------------------------------------------------------------------------------

/// `POST /push-tokens` as `who`.
async fn post_push_token(app: &TestApp, who: &Account, body: Value) -> reqwest::Response {
    authed(app, Method::POST, "/api/v1/push-tokens", &who.access).json(&body).send().await.unwrap()
}

/// Registers a new push token for `who` (201 asserted); its id.
async fn new_push_token(app: &TestApp, who: &Account, token: &str, platform: &str) -> Uuid {
    let res = post_push_token(app, who, json!({"token": token, "platform": platform})).await;
    json_of(res, 201).await["id"].as_str().unwrap().parse().unwrap()
}

/// A threshold rule `metric > 30` of `severity` (201 asserted).
async fn create_rule(app: &TestApp, by: &Account, grower_id: Uuid, metric: &str, severity: &str) -> Value {
    let body = json!({"growerId": grower_id, "metric": metric, "kind": "threshold", "op": "gt",
        "threshold": 30.0, "severity": severity});
    new_rule(app, by, body).await
}

/// Posts readings of one device and metric (202 asserted).
async fn post_readings(app: &TestApp, by: &Account, device: &Device, metric: &str, values: &[(f64, DateTime<Utc>)]) {
    let batch: Vec<Value> = values.iter().map(|(v, ts)| reading(device.id, metric, *v, *ts)).collect();
    send_readings(app, &bearer(by), &batch).await;
}

/// The one alert of `gh` on `metric`.
async fn alert_on(app: &TestApp, gh: &Greenhouse, device: &Device, metric: &str) -> Value {
    let all = alerts_of(app, gh).await;
    let mine: Vec<&Value> =
        all.iter().filter(|a| a["metric"] == metric && a["deviceId"] == device.id.to_string()).collect();
    assert_eq!(mine.len(), 1, "one alert on {metric}: {all:?}");
    mine[0].clone()
}

/// Delivery attempts on `channel`, oldest first.
async fn deliveries(app: &TestApp, channel: &str) -> Vec<delivery::Model> {
    deliveries_by(app, delivery::Column::Channel, channel).await
}

/// Jobs of `job_type` still in the table (queued, running or dead).
async fn jobs_of(app: &TestApp, job_type: &str) -> Vec<job::Model> {
    job::Entity::find()
        .filter(job::Column::JobType.eq(job_type))
        .order_by_asc(job::Column::CreatedAt)
        .all(&app.state.db)
        .await
        .unwrap()
}

/// Runs the due jobs of these types only (as a worker that knows no other type would), leaving
/// the rest queued for the test to look at; returns the number of runs.
async fn run_only(app: &TestApp, types: &[&'static str]) -> usize {
    let mut runs = 0;
    loop {
        let now = app.state.clock.now();
        let lease = std::time::Duration::from_secs(300);
        let claimed = queue::claim(&app.state.db, types, "notifications-test", now, lease, 1).await.unwrap();
        let Some(j) = claimed.into_iter().next() else { return runs };
        let kind = app.state.jobs.registry.get(&j.job_type).expect("a registered job type");
        if let Err(e) = kind.run(j.payload.clone(), &app.state, mash::jobs::Run { id: j.id, attempt: j.attempts }).await
        {
            panic!("{} failed: {e:#}", j.job_type);
        }
        queue::complete(&app.state.db, j.id, j.attempts).await.unwrap();
        runs += 1;
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

/// A moment well inside the telemetry window, from which each test's readings count up.
fn start_of_readings() -> DateTime<Utc> {
    Utc::now() - Duration::minutes(30)
}
