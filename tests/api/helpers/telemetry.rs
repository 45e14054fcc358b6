//! Telemetry reads shared by the telemetry and MQTT tests: history pages, raw readings
//! followed across cursors, rows counted in the database, and `/metrics` samples.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{authed, json_of},
    metrics_text, ts_of,
};

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The start of the current UTC hour.
pub fn this_hour() -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - now.rem_euclid(3600), 0).unwrap()
}

pub fn parse_ts(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("ts is a string: {v}"));
    assert!(s.ends_with('Z'), "UTC timestamp: {s}");
    ts_of(v)
}

/// The value of one Prometheus series (`name{labels}`) in `/metrics`, 0 when absent.
pub async fn metric_value(app: &TestApp, series: &str) -> f64 {
    let text = metrics_text(app).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse::<f64>().unwrap_or_else(|_| panic!("number for {series}: {v}")))
        .unwrap_or(0.0)
}

/// `GET /devices/{id}/telemetry` with the given query pairs.
pub async fn history(app: &TestApp, token: &str, device: Uuid, query: &[(&str, String)]) -> reqwest::Response {
    let mut qs = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        qs.append_pair(k, v);
    }
    let path = format!("/api/v1/devices/{device}/telemetry?{}", qs.finish());
    authed(app, Method::GET, &path, token).send().await.unwrap()
}

/// `(ts, value)` of `points`.
pub fn points_of(body: &Value) -> Vec<(DateTime<Utc>, f64)> {
    body["points"]
        .as_array()
        .unwrap_or_else(|| panic!("points: {body}"))
        .iter()
        .map(|p| (parse_ts(&p["ts"]), p["value"].as_f64().unwrap_or_else(|| panic!("value: {p}"))))
        .collect()
}

/// Every raw reading of `metric` in `[from, to)`, following `nextCursor` with pages of `limit`.
pub async fn all_raw(
    app: &TestApp,
    token: &str,
    device: Uuid,
    metric: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u64,
) -> Vec<(DateTime<Utc>, f64)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let mut q = vec![
            ("metric", metric.to_string()),
            ("from", rfc3339(from)),
            ("to", rfc3339(to)),
            ("limit", limit.to_string()),
        ];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let body = json_of(history(app, token, device, &q).await, 200).await;
        assert!(body["bucket"].is_null(), "{body}");
        assert_eq!(body["meta"]["limit"], limit, "{body}");
        let page = points_of(&body);
        assert!(page.len() as u64 <= limit, "{body}");
        out.extend(page.iter().copied());
        if body["meta"]["hasMore"] == json!(true) {
            assert_eq!(page.len() as u64, limit, "a page before the last is full: {body}");
            cursor = Some(body["meta"]["nextCursor"].as_str().unwrap_or_else(|| panic!("nextCursor: {body}")).into());
        } else {
            assert_eq!(body["meta"]["hasMore"], json!(false), "{body}");
            assert!(body["meta"].get("nextCursor").is_none_or(Value::is_null), "{body}");
            return out;
        }
    }
    panic!("pagination does not end");
}

/// Rows in `sensor_readings` of one device, counted in the database itself.
pub async fn stored_count(app: &TestApp, device: Uuid) -> i64 {
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let stmt = Statement::from_sql_and_values(
        backend,
        "SELECT count(*) FROM sensor_readings WHERE device_id = $1",
        [device.into()],
    );
    let row = db.query_one_raw(stmt).await.expect("count query").expect("one row");
    row.try_get_by_index::<i64>(0).expect("count")
}
