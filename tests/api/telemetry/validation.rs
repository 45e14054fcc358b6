//! Batch validation: one bad item refuses the whole batch naming it, values stored exactly as
//! sent, the 1..5000 size limits, the JSON body, the body limit and the accepted time window.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, assert_error,
    greenhouse::{accepted, bearer, device_auth, post_batch, reading},
    spawn_app, spawn_app_with,
    telemetry::{all_raw, history, metric_value, rfc3339, stored_count, this_hour},
};

use super::{BATCH, refused, series, setup};

// ---------------------------------------------------------------------------------------------
// Validation: one bad item refuses the batch
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_bad_item_refuses_the_whole_batch_naming_it() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = bearer(&s.gh.owner);
    let dev = s.device.id;
    let now = Utc::now();
    let t0 = this_hour() - Duration::hours(2);
    let good = |i: i64| reading(dev, "air.temp", i as f64, t0 + Duration::seconds(i));
    let rejected_before = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"invalid\"}").await;

    let long = format!("a{}", "b".repeat(64));
    let mut bad_items: Vec<(Value, &str)> = Vec::new();
    for m in ["Temp", "1abc", "", "_x", "t-1", "air temp", "é", long.as_str()] {
        bad_items.push((json!({ "deviceId": dev, "metric": m, "value": 1.0, "ts": rfc3339(t0) }), "metric"));
    }
    for v in [json!("abc"), json!(null), json!(true), json!([1.0]), json!({ "v": 1 })] {
        bad_items.push((json!({ "deviceId": dev, "metric": "air.temp", "value": v, "ts": rfc3339(t0) }), "value"));
    }
    let too_old = now - Duration::days(31);
    let too_new = now + Duration::hours(2);
    let ts_cases = [
        json!("yesterday"),
        json!("2026-13-01T00:00:00Z"),
        json!(t0.format("%Y-%m-%dT%H:%M:%S").to_string()),
        json!(t0.format("%Y-%m-%d").to_string()),
        json!(t0.timestamp()),
        json!(null),
        json!(rfc3339(too_old)),
        json!(rfc3339(too_new)),
        json!("9999-12-31T23:59:59Z"),
        json!("1970-01-01T00:00:00Z"),
    ];
    for ts in ts_cases {
        bad_items.push((json!({ "deviceId": dev, "metric": "air.temp", "value": 1.0, "ts": ts }), "ts"));
    }
    bad_items
        .push((json!({ "deviceId": "not-a-uuid", "metric": "air.temp", "value": 1.0, "ts": rfc3339(t0) }), "deviceId"));
    bad_items.push((json!({ "deviceId": dev, "value": 1.0, "ts": rfc3339(t0) }), ""));
    bad_items.push((json!({ "deviceId": dev, "metric": "air.temp", "ts": rfc3339(t0) }), ""));
    bad_items.push((json!({ "deviceId": dev, "metric": "air.temp", "value": 1.0 }), ""));
    bad_items.push((json!(42), ""));

    let count = bad_items.len();
    for (bad, field) in bad_items {
        let body = json!([good(0), good(1), good(2), bad.clone(), good(4)]);
        let res = post_batch(&app, &auth, &body).await;
        let err = assert_error(res, 400, BATCH).await;
        let fields: Vec<&str> = err["details"]
            .as_array()
            .unwrap_or_else(|| panic!("details for {bad}: {err}"))
            .iter()
            .filter_map(|d| d["field"].as_str())
            .collect();
        let want = if field.is_empty() { "items[3]".to_string() } else { format!("items[3].{field}") };
        assert!(fields.iter().any(|f| f.starts_with(want.as_str())), "{bad}: expected {want} in {err}");
        assert!(fields.iter().all(|f| f.starts_with("items[3]")), "only the bad item is named for {bad}: {err}");
    }
    assert_eq!(stored_count(&app, dev).await, 0, "no refused batch stored anything");
    let rejected = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"invalid\"}").await;
    assert_eq!(rejected - rejected_before, count as f64);

    // Several bad items are each named.
    let body = json!([
        good(0),
        { "deviceId": dev, "metric": "Bad", "value": 1.0, "ts": rfc3339(t0) },
        good(2),
        { "deviceId": dev, "metric": "air.temp", "value": 1.0, "ts": "soon" },
    ]);
    refused(post_batch(&app, &auth, &body).await, 400, &["items[1].metric", "items[3].ts"]).await;

    // Device auth is validated the same way.
    let body = json!([{ "metric": "air.temp", "value": 1.0, "ts": "soon" }]);
    refused(post_batch(&app, &device_auth(&s.device), &body).await, 400, &["items[0].ts"]).await;

    // The edges that are fine: a 64-character metric, dots and digits, negative and huge
    // finite values, the window's inner edges.
    let metric64 = format!("a{}", "b".repeat(63));
    let body = json!([
        reading(dev, &metric64, -0.0, t0),
        reading(dev, "soil.moisture_2", -1.5e300, t0),
        reading(dev, "x", f64::MAX, t0),
        reading(dev, "air.temp", 1.0, now - Duration::days(29)),
        reading(dev, "air.temp", 2.0, now + Duration::minutes(50)),
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (5, 0));
    assert_eq!(stored_count(&app, dev).await, 5);
}

#[tokio::test]
async fn a_non_finite_value_is_refused_naming_the_item() {
    // JSON has no NaN or Infinity; a number too large for a double is the only way to send one.
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = rfc3339(this_hour() - Duration::hours(1));
    let body = format!(
        r#"[{{"deviceId":"{d}","metric":"air.temp","value":1,"ts":"{t0}"}},{{"deviceId":"{d}","metric":"air.temp","value":1e999,"ts":"{t0}"}}]"#,
        d = s.device.id
    );
    let res = app
        .client
        .post(app.url(BATCH))
        .header("authorization", bearer(&s.gh.owner))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let err = assert_error(res, 400, BATCH).await;
    assert_eq!(stored_count(&app, s.device.id).await, 0);
    let named = err["details"].as_array().is_some_and(|d| d.iter().any(|e| e["field"] == "items[1].value"));
    assert!(named, "the out-of-range value is named: {err}");
}

#[tokio::test]
async fn values_are_stored_exactly_as_sent() {
    // Doubles whose shortest form needs 16-17 significant digits (what JavaScript's
    // JSON.stringify or any float formatter sends) must come back bit for bit.
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(1);
    let values = [
        "0.30000000000000004",
        "40.602000000000004",
        "1.0000000000000002",
        "123456.78901234567",
        "-98.28500000000001",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "21.5",
    ];
    let items: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(r#"{{"metric":"air.temp","value":{v},"ts":"{}"}}"#, rfc3339(t0 + Duration::seconds(i as i64)))
        })
        .collect();
    let body = format!("[{}]", items.join(","));
    assert_eq!(accepted(post_raw(&app, &device_auth(&s.device), body).await).await, (values.len() as u64, 0));
    let q = [("metric", "air.temp".to_string()), ("from", rfc3339(t0)), ("to", rfc3339(t0 + Duration::minutes(1)))];
    let res = history(&app, &s.gh.owner.access, s.device.id, &q).await;
    assert_eq!(res.status(), 200);
    // Compared as text: the server writes the shortest form of the double it holds, so the
    // same text means the same double (and no float parser on this side takes part).
    let text = res.text().await.unwrap();
    let got: Vec<&str> = text.split("\"value\":").skip(1).map(|rest| rest.split(['}', ',']).next().unwrap()).collect();
    let want: Vec<String> = values
        .iter()
        .map(|v| {
            let x: f64 = v.parse().unwrap();
            let mut buf = String::new();
            use std::fmt::Write;
            write!(buf, "{}", serde_json::Value::from(x)).unwrap();
            buf
        })
        .collect();
    assert_eq!(got, want, "{text}");
}

#[tokio::test]
async fn batch_size_limits_are_one_to_five_thousand() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let t0 = this_hour() - Duration::hours(3);

    let err = refused(post_batch(&app, &auth, &json!([])).await, 400, &["items"]).await;
    assert_eq!(err["details"][0]["field"], "items", "{err}");

    let over = series(s.device.id, "air.temp", t0, 5001);
    let err = refused(post_batch(&app, &auth, &json!(over)).await, 400, &["items"]).await;
    assert_eq!(err["details"][0]["field"], "items", "{err}");
    assert_eq!(stored_count(&app, s.device.id).await, 0);

    let exactly = series(s.device.id, "air.temp", t0, 5000);
    assert_eq!(accepted(post_batch(&app, &auth, &json!(exactly)).await).await, (5000, 0));
    assert_eq!(stored_count(&app, s.device.id).await, 5000);
    let raw = all_raw(&app, &s.gh.owner.access, s.device.id, "air.temp", t0, t0 + Duration::hours(2), 10_000).await;
    assert_eq!(raw.len(), 5000);
    // And the full batch again is 5000 duplicates.
    assert_eq!(accepted(post_batch(&app, &auth, &json!(exactly)).await).await, (0, 5000));
    assert_eq!(stored_count(&app, s.device.id).await, 5000);
}

#[tokio::test]
async fn the_body_must_be_a_json_array_of_readings() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let item = reading(s.device.id, "air.temp", 1.0, this_hour() - Duration::hours(1));
    let send = |ct: Option<&'static str>, body: String| {
        let mut req = app.client.post(app.url(BATCH)).header("authorization", auth.clone()).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };

    for body in [item.to_string(), "\"abc\"".into(), "42".into(), "null".into(), "{}".into()] {
        let err = assert_error(send(Some("application/json"), body.clone()).await.unwrap(), 400, BATCH).await;
        assert!(err["message"].as_str().is_some(), "{body}: {err}");
    }
    for body in ["[", "[{\"metric\":", "not json", ""] {
        assert_error(send(Some("application/json"), body.to_string()).await.unwrap(), 400, BATCH).await;
    }
    let arr = json!([item]).to_string();
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        assert_error(send(ct, arr.clone()).await.unwrap(), 415, BATCH).await;
    }
    assert_eq!(stored_count(&app, s.device.id).await, 0);
    // The same body with a JSON content type (parameters allowed) is fine.
    let res = send(Some("application/json; charset=utf-8"), arr).await.unwrap();
    assert_eq!(accepted(res).await, (1, 0));
}

/// `n` readings padded with an ignored field so that the body is about `size` bytes.
fn padded_body(device: Uuid, t0: DateTime<Utc>, n: usize, size: usize) -> String {
    let plain: Vec<Value> = series(device, "air.temp", t0, n);
    let bare = serde_json::to_string(&plain).unwrap().len();
    let per = size.saturating_sub(bare) / n;
    let pad = "x".repeat(per.saturating_sub(12));
    let items: Vec<Value> = plain
        .into_iter()
        .map(|mut v| {
            v["note"] = json!(pad);
            v
        })
        .collect();
    serde_json::to_string(&items).unwrap()
}

async fn post_raw(app: &TestApp, auth: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url(BATCH))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_body_limit_is_the_configured_one() {
    let app = spawn_app_with(&[("TELEMETRY_BODY_LIMIT_BYTES", "65536")], axum::Router::new()).await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let t0 = this_hour() - Duration::hours(1);

    let over = padded_body(s.device.id, t0, 100, 70_000);
    assert!(over.len() > 65_536, "{}", over.len());
    assert_error(post_raw(&app, &auth, over).await, 413, BATCH).await;
    let rejected = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"too_large\"}").await;
    assert_eq!(rejected, 1.0);
    assert_eq!(stored_count(&app, s.device.id).await, 0);

    let under = padded_body(s.device.id, t0, 100, 60_000);
    assert!(under.len() < 65_536 && under.len() > 50_000, "{}", under.len());
    assert_eq!(accepted(post_raw(&app, &auth, under).await).await, (100, 0));
}

#[tokio::test]
async fn a_full_batch_larger_than_the_general_body_limit_is_accepted() {
    // The default batch limit is 8 MiB, far above the 1 MiB of other routes (and axum's 2 MB).
    let app = spawn_app().await;
    let s = setup(&app).await;
    let body = padded_body(s.device.id, this_hour() - Duration::hours(2), 5000, 3_000_000);
    assert!(body.len() > 2_900_000, "{}", body.len());
    assert_eq!(accepted(post_raw(&app, &device_auth(&s.device), body).await).await, (5000, 0));
    assert_eq!(stored_count(&app, s.device.id).await, 5000);
}

#[tokio::test]
async fn the_accepted_window_follows_the_configuration() {
    let overrides = [("TELEMETRY_BACKFILL_DAYS", "2"), ("TELEMETRY_MAX_FUTURE_SECS", "120")];
    let app = spawn_app_with(&overrides, axum::Router::new()).await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let now = Utc::now();
    let one = |t: DateTime<Utc>| json!([{ "metric": "air.temp", "value": 1.0, "ts": rfc3339(t) }]);

    for t in [now - Duration::days(3), now - Duration::hours(49), now + Duration::minutes(10)] {
        refused(post_batch(&app, &auth, &one(t)).await, 400, &["items[0].ts"]).await;
    }
    assert_eq!(stored_count(&app, s.device.id).await, 0);
    for t in [now - Duration::hours(47), now + Duration::seconds(60)] {
        assert_eq!(accepted(post_batch(&app, &auth, &one(t)).await).await, (1, 0));
    }
    assert_eq!(stored_count(&app, s.device.id).await, 2);
}
