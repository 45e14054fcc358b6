//! CONTRACT.md "Growers, devices, telemetry": `POST /telemetry/batch` (validation naming the
//! item, the 1..5000 limits, body limit and content type, who may write what, dedup on
//! (deviceId, metric, ts) also inside one batch and under concurrency, the accepted time
//! window, microsecond timestamps), the live state (`GET /devices/{id}/state`, never going
//! backwards), history (`GET /devices/{id}/telemetry`: UTC-aligned buckets checked against
//! aggregates computed here, raw readings paged by cursor), the telemetry metrics and retention.

mod history;
mod ingestion;
mod metrics_and_retention;
mod state;
mod validation;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{get_authed, json_of},
    assert_error,
    greenhouse::{Device, Greenhouse, greenhouse_with_device, reading},
};

const BATCH: &str = "/api/v1/telemetry/batch";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn at_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).expect("timestamp in range")
}

/// Today's UTC midnight.
fn today_midnight() -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - now.rem_euclid(86_400), 0).unwrap()
}

/// A grower, its owner and one device.
struct Setup {
    gh: Greenhouse,
    device: Device,
}

async fn setup(app: &TestApp) -> Setup {
    let (gh, device) = greenhouse_with_device(app, "sensor").await;
    Setup { gh, device }
}

/// A 400/403 naming these fields (each must appear in `details`).
async fn refused(res: reqwest::Response, status: u16, fields: &[&str]) -> Value {
    let body = assert_error(res, status, BATCH).await;
    let named: Vec<&str> =
        body["details"].as_array().map(|d| d.iter().filter_map(|e| e["field"].as_str()).collect()).unwrap_or_default();
    for f in fields {
        assert!(named.contains(f), "expected {f} in details: {body}");
    }
    body
}

/// `n` good readings of `metric`, one a second from `t0`.
fn series(device: Uuid, metric: &str, t0: DateTime<Utc>, n: usize) -> Vec<Value> {
    (0..n).map(|i| reading(device, metric, i as f64 * 0.5, t0 + Duration::seconds(i as i64))).collect()
}

async fn state_of(app: &TestApp, token: &str, device: Uuid) -> Value {
    json_of(get_authed(app, &format!("/api/v1/devices/{device}/state"), token).await, 200).await
}
