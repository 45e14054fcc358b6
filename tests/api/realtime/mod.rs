//! docs/realtime.md (and CONTRACT.md "Realtime"): path subscriptions over WebSocket and SSE,
//! driven by real clients (`helpers/rt_client.rs`) against the real application.
//! Authentication and its refusals, every path's authorization across growers and customers,
//! snapshot-then-live with consecutive ids (also while writes race the subscription), each
//! source of events (HTTP and MQTT telemetry, desired and reported state, alerts, orders,
//! presence), resume and reset, token expiry and re-auth, revocation, presence (across
//! restarts, and of a dead client), the slow-consumer cut-off, limits, keep-alive, shutdown,
//! two instances over Redis, the two replay stores behind resume, and the realtime state kept
//! in Redis.
//!
//! Waits are bounded by generous timeouts (`WAIT`), never asserted on. "Nothing arrived" is
//! shown without sleeping: ids on a path increase by exactly one per event, so the next event
//! after a no-op names the id that follows; or a later event caused on another path, plus a
//! ping round trip, arrives with nothing of the refused path before it.

mod auth;
mod authorization;
mod connections;
mod presence;
mod redis_state;
mod replay;
mod resume;
mod snapshots;
mod sources;
mod two_instances;

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, json_of},
    alerts::new_rule,
    shop::{items, place},
    ts_of,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A longer bound, for what waits on token expiry or idle timeouts.
const LONG_WAIT: Duration = Duration::from_secs(25);

fn live(device: Uuid) -> String {
    format!("/live/sensors/{device}")
}

fn desired(device: Uuid) -> String {
    format!("/controls/{device}/desired")
}

fn reported(device: Uuid) -> String {
    format!("/controls/{device}/reported")
}

fn alerts(grower: Uuid) -> String {
    format!("/alerts/{grower}")
}

fn presence(grower: Uuid) -> String {
    format!("/presence/{grower}")
}

fn orders(user: Uuid) -> String {
    format!("/orders/{user}")
}

/// A base for reading timestamps: half an hour ago, so offsets stay in the accepted window.
fn base() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(30)
}

fn at(base: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    base + chrono::Duration::milliseconds(ms)
}

fn micros(v: &Value) -> i64 {
    ts_of(v).timestamp_micros()
}

fn assert_timestamp(v: &Value) {
    micros(v);
}

/// Readings as `(metric, ts µs, value)`, sorted: from what was posted (of one device) or from
/// an event's `data.readings`.
fn triples<'a>(items: impl IntoIterator<Item = &'a Value>) -> Vec<(String, i64, f64)> {
    let mut out: Vec<(String, i64, f64)> = items
        .into_iter()
        .map(|r| {
            let metric = r["metric"].as_str().unwrap_or_else(|| panic!("metric: {r}")).to_string();
            let value = r["value"].as_f64().unwrap_or_else(|| panic!("value: {r}"));
            (metric, micros(&r["ts"]), value)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

fn event_readings(ev: &Value) -> Vec<(String, i64, f64)> {
    triples(ev["data"]["readings"].as_array().unwrap_or_else(|| panic!("data.readings: {ev}")))
}

fn sent_for(items: &[Value], device: Uuid) -> Vec<(String, i64, f64)> {
    triples(items.iter().filter(|r| r["deviceId"] == device.to_string()))
}

async fn put_desired(app: &TestApp, who: &Account, device: Uuid, doc: Value) -> Value {
    let res = authed(app, Method::PUT, &format!("/api/v1/devices/{device}/desired"), &who.access)
        .json(&doc)
        .send()
        .await
        .unwrap();
    json_of(res, 200).await
}

/// A threshold rule on `temp > 30` for the grower.
async fn temp_rule(app: &TestApp, who: &Account, grower: Uuid) -> Value {
    let body = json!({ "growerId": grower, "metric": "temp", "kind": "threshold", "op": "gt",
                       "threshold": 30.0, "severity": "critical", "enabled": true });
    new_rule(app, who, body).await
}

/// `POST /orders` of one item with an `Idempotency-Key` (201 asserted).
async fn place_order(app: &TestApp, who: &Account, product: Uuid) -> Value {
    let key = Uuid::now_v7().to_string();
    json_of(place(app, &who.access, &json!({ "items": items(&[(product, 1)]) }), Some(&key)).await, 201).await
}

async fn cancel_order(app: &TestApp, who: &Account, id: &str) -> Value {
    let res = authed(app, Method::POST, &format!("/api/v1/orders/{id}/cancel"), &who.access).send().await.unwrap();
    json_of(res, 200).await
}

/// Whether `/metrics` shows a slow-consumer disconnect (any series of
/// `realtime_disconnects_total` whose labels mention "slow", with a value above 0).
async fn slow_consumer_counted(app: &TestApp) -> bool {
    let text = app.get("/metrics").await.text().await.unwrap_or_default();
    text.lines().any(|l| {
        l.starts_with("realtime_disconnects_total{")
            && l.contains("slow")
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0)
    })
}

/// The presence entry of `user` in a `/presence` snapshot.
fn member_entry(snapshot: &Value, user: Uuid) -> Value {
    let members = snapshot["data"]["members"].as_array().unwrap_or_else(|| panic!("data.members: {snapshot}"));
    members
        .iter()
        .find(|m| m["userId"] == user.to_string())
        .unwrap_or_else(|| panic!("{user} listed in {snapshot}"))
        .clone()
}

/// Asserts `msgs` hold nothing on `path`.
fn assert_none_on(msgs: &[Value], path: &str, who: &str) {
    for m in msgs {
        assert_ne!(m["path"], path, "{who} received a message on a path it was refused: {m}");
    }
}
