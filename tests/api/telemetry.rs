//! CONTRACT.md "Growers, devices, telemetry": `POST /telemetry/batch` (validation naming the
//! item, the 1..5000 limits, body limit and content type, who may write what, dedup on
//! (deviceId, metric, ts) also inside one batch and under concurrency, the accepted time
//! window, microsecond timestamps), the live state (`GET /devices/{id}/state`, never going
//! backwards), history (`GET /devices/{id}/telemetry`: UTC-aligned buckets checked against
//! aggregates computed here, raw readings paged by cursor) and the telemetry metrics.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{authed, get_authed, json_of, user_with_role},
    assert_error,
    greenhouse::{
        Device, Greenhouse, accepted, add_member, bearer, create_device, device_auth, greenhouse,
        greenhouse_with_device, post_batch, reading,
    },
    spawn_app, spawn_app_with,
    telemetry::{all_raw, history, metric_value, parse_ts, points_of, rfc3339, stored_count, this_hour},
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

// ---------------------------------------------------------------------------------------------
// Ingestion: accepted, duplicates, who may write
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_resent_batch_is_counted_as_duplicates_and_stored_once() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(3);
    let items = series(s.device.id, "air.temp", t0, 50);
    let auth = device_auth(&s.device);

    let ingested_before = metric_value(&app, "telemetry_readings_ingested_total{source=\"http\"}").await;
    assert_eq!(accepted(post_batch(&app, &auth, &json!(items)).await).await, (50, 0));
    assert_eq!(stored_count(&app, s.device.id).await, 50);
    // The answer got lost; the device sends the same batch again.
    assert_eq!(accepted(post_batch(&app, &auth, &json!(items)).await).await, (0, 50));
    assert_eq!(stored_count(&app, s.device.id).await, 50, "nothing stored twice");

    // Half old, half new.
    let mut mixed: Vec<Value> = items[25..].to_vec();
    mixed.extend(series(s.device.id, "air.temp", t0 + Duration::seconds(50), 25));
    assert_eq!(accepted(post_batch(&app, &auth, &json!(mixed)).await).await, (25, 25));
    assert_eq!(stored_count(&app, s.device.id).await, 75);

    // Repeats inside one batch: the second copy is a duplicate even with another value.
    let t = t0 + Duration::minutes(30);
    let inner = json!([
        reading(s.device.id, "air.humidity", 40.0, t),
        reading(s.device.id, "air.humidity", 41.0, t),
        reading(s.device.id, "air.humidity", 42.0, t + Duration::seconds(1)),
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &inner).await).await, (2, 1));
    assert_eq!(stored_count(&app, s.device.id).await, 77);

    // A duplicate with a different value never overwrites the stored reading, and the live
    // state agrees with what is stored.
    let owner = &s.gh.owner.access;
    let again = json!([reading(s.device.id, "air.temp", 999.0, t0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &again).await).await, (0, 1));
    let raw = all_raw(&app, owner, s.device.id, "air.temp", t0, t0 + Duration::hours(1), 1000).await;
    assert_eq!(raw.len(), 75);
    assert_eq!(raw[0], (t0, 0.0));
    let hum = all_raw(&app, owner, s.device.id, "air.humidity", t0, t0 + Duration::hours(1), 1000).await;
    assert_eq!(hum.len(), 2);
    assert_eq!(hum[0].0, t);
    assert!(hum[0].1 == 40.0 || hum[0].1 == 41.0, "{hum:?}");
    let state = state_of(&app, owner, s.device.id).await;
    assert_eq!(state["reported"]["air.humidity"]["value"], 42.0, "{state}");
    assert_eq!(state["reported"]["air.temp"]["value"], 12.0, "{state}");
    assert_eq!(parse_ts(&state["reported"]["air.temp"]["ts"]), t0 + Duration::seconds(74));

    // The same readings under another metric or device are not duplicates.
    let other = create_device(&app, &s.gh.owner, s.gh.grower_id, "other").await;
    let body = json!([reading(s.device.id, "air.co2", 1.0, t0), reading(other.id, "air.temp", 1.0, t0)]);
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.owner), &body).await).await, (2, 0));

    let ingested = metric_value(&app, "telemetry_readings_ingested_total{source=\"http\"}").await;
    assert_eq!(ingested - ingested_before, 79.0);
    let dups = metric_value(&app, "telemetry_readings_duplicate_total{source=\"http\"}").await;
    assert_eq!(dups, 50.0 + 25.0 + 1.0 + 1.0);
}

#[tokio::test]
async fn timestamps_are_kept_to_the_microsecond_and_compared_in_utc() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let owner = &s.gh.owner.access;
    let t = this_hour() - Duration::hours(2);
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let item = |ts: String, value: f64| json!({ "metric": "leaf.temp", "value": value, "ts": ts });

    // Nanoseconds are truncated: these two are the same reading.
    let body = json!([item(format!("{base}.1234567Z"), 1.0), item(format!("{base}.1234568Z"), 2.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 1));
    let body = json!([item(format!("{base}.123456Z"), 3.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (0, 1), "the same microsecond");
    // One microsecond later is another reading.
    let body = json!([item(format!("{base}.123457Z"), 4.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 0));

    // An offset is the same instant as its UTC form.
    let plus2 = (t + Duration::hours(2)).format("%Y-%m-%dT%H:%M:%S").to_string();
    let body = json!([item(format!("{plus2}.5+02:00"), 5.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 0));
    let body = json!([item(format!("{base}.500000Z"), 6.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (0, 1));

    let raw = all_raw(&app, owner, s.device.id, "leaf.temp", t, t + Duration::seconds(1), 100).await;
    let first = t + Duration::microseconds(123_456);
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert_eq!(raw[0].0, first);
    assert!(raw[0].1 == 1.0 || raw[0].1 == 2.0, "{raw:?}");
    assert_eq!(raw[1], (first + Duration::microseconds(1), 4.0));
    assert_eq!(raw[2], (t + Duration::milliseconds(500), 5.0));
    assert_eq!(stored_count(&app, s.device.id).await, 3);
}

#[tokio::test]
async fn concurrent_copies_of_a_batch_store_each_reading_once() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let items = json!(series(s.device.id, "root.temp", this_hour() - Duration::hours(4), 500));
    let auth = device_auth(&s.device);
    let sends = (0..4).map(|_| post_batch(&app, &auth, &items));
    let results = futures_util::future::join_all(sends).await;
    let mut acc = 0;
    let mut dup = 0;
    for res in results {
        let (a, d) = accepted(res).await;
        acc += a;
        dup += d;
    }
    assert_eq!((acc, dup), (500, 1500));
    assert_eq!(stored_count(&app, s.device.id).await, 500);
}

#[tokio::test]
async fn a_device_writes_only_its_own_readings() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let other = create_device(&app, &s.gh.owner, s.gh.grower_id, "neighbour").await;
    let t0 = this_hour() - Duration::hours(1);
    let auth = device_auth(&s.device);

    // deviceId may be left out: it means the calling device.
    let body = json!([
        { "metric": "air.temp", "value": 21.5, "ts": rfc3339(t0) },
        { "deviceId": s.device.id, "metric": "air.temp", "value": 22.0, "ts": rfc3339(t0 + Duration::seconds(1)) },
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (2, 0));
    assert_eq!(stored_count(&app, s.device.id).await, 2);

    // Another device's id anywhere refuses the whole batch.
    let body = json!([
        reading(s.device.id, "air.temp", 1.0, t0 + Duration::seconds(5)),
        reading(s.device.id, "air.temp", 2.0, t0 + Duration::seconds(6)),
        reading(other.id, "air.temp", 3.0, t0 + Duration::seconds(7)),
    ]);
    let rejected_before = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"forbidden\"}").await;
    refused(post_batch(&app, &auth, &body).await, 403, &["items[2].deviceId"]).await;
    assert_eq!(stored_count(&app, s.device.id).await, 2, "nothing of a refused batch is stored");
    assert_eq!(stored_count(&app, other.id).await, 0);
    let rejected = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"forbidden\"}").await;
    assert_eq!(rejected - rejected_before, 1.0);

    // A wrong or missing credential.
    let body = json!([reading(s.device.id, "air.temp", 1.0, t0 + Duration::seconds(9))]);
    let fake = format!("Device {}x", s.device.token);
    assert_error(post_batch(&app, &fake, &body).await, 401, BATCH).await;
    let res = app.client.post(app.url(BATCH)).json(&body).send().await.unwrap();
    assert_error(res, 401, BATCH).await;

    // A rotated token stops working; a deleted device can no longer send.
    let res = authed(&app, Method::POST, &format!("/api/v1/devices/{}/rotate-token", s.device.id), &s.gh.owner.access)
        .send()
        .await
        .unwrap();
    let new_token = json_of(res, 200).await["deviceToken"].as_str().unwrap().to_string();
    assert_error(post_batch(&app, &auth, &body).await, 401, BATCH).await;
    assert_eq!(accepted(post_batch(&app, &format!("Device {new_token}"), &body).await).await, (1, 0));
    let res = authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", s.device.id), &s.gh.owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let body = json!([reading(s.device.id, "air.temp", 1.0, t0 + Duration::seconds(10))]);
    assert_error(post_batch(&app, &format!("Device {new_token}"), &body).await, 401, BATCH).await;
    assert_eq!(stored_count(&app, s.device.id).await, 3);
}

#[tokio::test]
async fn a_person_needs_write_access_to_each_devices_grower() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(1);
    let mine = s.device.id;
    let one = |dev: Uuid, secs: i64| json!([reading(dev, "air.temp", secs as f64, t0 + Duration::seconds(secs))]);

    // Owner, member and admin may write.
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.owner), &one(mine, 1)).await).await, (1, 0));
    let member = user_with_role(&app, "member", "GROWER").await;
    assert_eq!(add_member(&app, &s.gh.owner, s.gh.grower_id, member.id, "MEMBER").await.status(), 201);
    assert_eq!(accepted(post_batch(&app, &bearer(&member), &one(mine, 2)).await).await, (1, 0));
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.admin), &one(mine, 3)).await).await, (1, 0));

    // A person must name the device.
    let body = json!([{ "metric": "air.temp", "value": 1.0, "ts": rfc3339(t0) }]);
    refused(post_batch(&app, &bearer(&s.gh.owner), &body).await, 400, &["items[0].deviceId"]).await;

    // Someone else's grower: another GROWER, a customer.
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    refused(post_batch(&app, &bearer(&outsider), &one(mine, 4)).await, 403, &["items[0].deviceId"]).await;
    let customer = user_with_role(&app, "customer", "CUSTOMER").await;
    assert_error(post_batch(&app, &bearer(&customer), &one(mine, 5)).await, 403, BATCH).await;

    // A batch mixing a writable device with another grower's: refused whole, naming the index.
    let theirs_gh = greenhouse(&app).await;
    let theirs = create_device(&app, &theirs_gh.owner, theirs_gh.grower_id, "theirs").await;
    let body = json!([
        reading(mine, "air.temp", 6.0, t0 + Duration::seconds(6)),
        reading(mine, "air.temp", 7.0, t0 + Duration::seconds(7)),
        reading(theirs.id, "air.temp", 8.0, t0 + Duration::seconds(8)),
        reading(mine, "air.temp", 9.0, t0 + Duration::seconds(9)),
    ]);
    refused(post_batch(&app, &bearer(&s.gh.owner), &body).await, 403, &["items[2].deviceId"]).await;
    // A device that does not exist is not writable either.
    let body = json!([
        reading(mine, "air.temp", 6.0, t0 + Duration::seconds(6)),
        reading(Uuid::now_v7(), "air.temp", 1.0, t0)
    ]);
    refused(post_batch(&app, &bearer(&s.gh.admin), &body).await, 403, &["items[1].deviceId"]).await;
    assert_eq!(stored_count(&app, mine).await, 3, "refused batches store nothing");
    assert_eq!(stored_count(&app, theirs.id).await, 0);

    // A deleted device takes no more readings from people either.
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{mine}"), &s.gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    refused(post_batch(&app, &bearer(&s.gh.owner), &one(mine, 10)).await, 403, &["items[0].deviceId"]).await;
    assert_eq!(stored_count(&app, mine).await, 3);
}

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

// ---------------------------------------------------------------------------------------------
// Live state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn live_state_holds_the_latest_reading_per_metric_and_never_goes_back() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let owner = &s.gh.owner.access;
    let t = this_hour() - Duration::hours(1);
    let at = |mins: i64| t + Duration::minutes(mins);

    let fresh = state_of(&app, owner, s.device.id).await;
    assert_eq!(fresh["deviceId"], s.device.id.to_string());
    assert_eq!(fresh["reported"], json!({}), "{fresh}");

    // Out of order inside one batch: the newest wins.
    let body = json!([
        reading(s.device.id, "air.temp", 2.0, at(20)),
        reading(s.device.id, "air.temp", 3.0, at(30)),
        reading(s.device.id, "air.temp", 1.0, at(10)),
        reading(s.device.id, "air.humidity", 55.5, at(5)),
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (4, 0));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], 3.0, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), at(30));
    assert_eq!(st["reported"]["air.humidity"]["value"], 55.5, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.humidity"]["ts"]), at(5));
    assert_eq!(st["reported"].as_object().unwrap().len(), 2, "{st}");

    // An older reading sent later is stored but does not replace the newer live value.
    let body = json!([reading(s.device.id, "air.temp", 99.0, at(25))]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 0));
    // Neither does a resent reading with the same ts and another value.
    let body = json!([reading(s.device.id, "air.temp", 77.0, at(30))]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (0, 1));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], 3.0, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), at(30));
    let raw = all_raw(&app, owner, s.device.id, "air.temp", t, at(60), 100).await;
    assert_eq!(raw, vec![(at(10), 1.0), (at(20), 2.0), (at(25), 99.0), (at(30), 3.0)]);

    // A newer one does, also from a person and with sub-second precision.
    let newer = at(31) + Duration::microseconds(654_321);
    let body = json!([reading(s.device.id, "air.temp", -4.25, newer)]);
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.owner), &body).await).await, (1, 0));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], -4.25, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), newer);
    assert_eq!(st["reported"]["air.humidity"]["value"], 55.5, "other metrics untouched: {st}");

    // Another device's readings stay with that device.
    let other = create_device(&app, &s.gh.owner, s.gh.grower_id, "other").await;
    let body = json!([reading(other.id, "air.temp", 1000.0, at(50))]);
    assert_eq!(accepted(post_batch(&app, &device_auth(&other), &body).await).await, (1, 0));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], -4.25, "{st}");
    let st = state_of(&app, owner, other.id).await;
    assert_eq!(st["reported"], json!({ "air.temp": { "value": 1000.0, "ts": st["reported"]["air.temp"]["ts"] } }));
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), at(50));
}

#[tokio::test]
async fn state_and_history_of_an_unknown_or_foreign_device_are_not_found() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(1);
    let body = json!([reading(s.device.id, "air.temp", 1.0, t0)]);
    assert_eq!(accepted(post_batch(&app, &device_auth(&s.device), &body).await).await, (1, 0));
    let q = [("metric", "air.temp".to_string())];

    let unknown = Uuid::now_v7();
    for token in [&s.gh.owner.access, &s.gh.admin.access] {
        let path = format!("/api/v1/devices/{unknown}/state");
        assert_error(get_authed(&app, &path, token).await, 404, &path).await;
        let path = format!("/api/v1/devices/{unknown}/telemetry");
        assert_error(history(&app, token, unknown, &q).await, 404, &path).await;
    }
    // A GROWER of another grower sees nothing of this one.
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    let path = format!("/api/v1/devices/{}/state", s.device.id);
    assert_error(get_authed(&app, &path, &outsider.access).await, 404, &path).await;
    let path = format!("/api/v1/devices/{}/telemetry", s.device.id);
    assert_error(history(&app, &outsider.access, s.device.id, &q).await, 404, &path).await;
    // Without credentials: 401.
    let res = app.get(&format!("/api/v1/devices/{}/state", s.device.id)).await;
    assert_error(res, 401, &format!("/api/v1/devices/{}/state", s.device.id)).await;
    let res = app.get(&format!("/api/v1/devices/{}/telemetry?metric=air.temp", s.device.id)).await;
    assert_error(res, 401, &path).await;

    // A member reads both; a deleted device is gone from both.
    let member = user_with_role(&app, "member", "GROWER").await;
    assert_eq!(add_member(&app, &s.gh.owner, s.gh.grower_id, member.id, "MEMBER").await.status(), 201);
    let st = state_of(&app, &member.access, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], 1.0, "{st}");
    let res = authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", s.device.id), &s.gh.owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let spath = format!("/api/v1/devices/{}/state", s.device.id);
    assert_error(get_authed(&app, &spath, &s.gh.owner.access).await, 404, &spath).await;
    assert_error(history(&app, &s.gh.owner.access, s.device.id, &q).await, 404, &path).await;
}

// ---------------------------------------------------------------------------------------------
// History: buckets against independently computed aggregates
// ---------------------------------------------------------------------------------------------

const AGGS: [&str; 6] = ["avg", "min", "max", "sum", "count", "last"];
const BUCKETS: [(&str, i64); 4] = [("1m", 60), ("5m", 300), ("1h", 3600), ("1d", 86_400)];

/// Expected points: readings in `[from, to)` grouped by UTC (epoch) aligned bucket.
fn expected_points(readings: &BTreeMap<i64, f64>, from: i64, to: i64, bucket_secs: i64, agg: &str) -> Vec<(i64, f64)> {
    let width = bucket_secs * 1_000_000;
    let mut groups: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
    for (&ts, &v) in readings.range(from..to) {
        groups.entry(ts.div_euclid(width) * width).or_default().push((ts, v));
    }
    groups
        .into_iter()
        .map(|(start, rows)| {
            let values = rows.iter().map(|r| r.1);
            let v = match agg {
                "avg" => values.sum::<f64>() / rows.len() as f64,
                "min" => values.fold(f64::INFINITY, f64::min),
                "max" => values.fold(f64::NEG_INFINITY, f64::max),
                "sum" => values.sum::<f64>(),
                "count" => rows.len() as f64,
                "last" => rows.iter().max_by_key(|r| r.0).unwrap().1,
                other => panic!("agg {other}"),
            };
            (start, v)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

async fn post_all(app: &TestApp, auth: &str, device: Uuid, metric: &str, readings: &BTreeMap<i64, f64>) {
    let items: Vec<Value> = readings.iter().map(|(&ts, &v)| reading(device, metric, v, at_micros(ts))).collect();
    for chunk in items.chunks(5000) {
        let (a, d) = accepted(post_batch(app, auth, &json!(chunk)).await).await;
        assert_eq!((a, d), (chunk.len() as u64, 0));
    }
}

/// Every bucket size and aggregate over `[from, to)` against `expected_points`.
async fn check_buckets(
    app: &TestApp,
    token: &str,
    device: Uuid,
    metric: &str,
    readings: &BTreeMap<i64, f64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    for (bucket, secs) in BUCKETS {
        for agg in AGGS {
            let q = [
                ("metric", metric.to_string()),
                ("from", rfc3339(from)),
                ("to", rfc3339(to)),
                ("bucket", bucket.to_string()),
                ("agg", agg.to_string()),
            ];
            let body = json_of(history(app, token, device, &q).await, 200).await;
            assert_eq!(body["deviceId"], device.to_string(), "{body}");
            assert_eq!(body["metric"], metric);
            assert_eq!(body["bucket"], bucket);
            assert_eq!(body["agg"], agg);
            assert_eq!(parse_ts(&body["from"]), from);
            assert_eq!(parse_ts(&body["to"]), to);
            assert!(body.get("meta").is_none_or(Value::is_null), "no paging for buckets: {body}");
            let got: Vec<(i64, f64)> = points_of(&body).into_iter().map(|(t, v)| (micros(t), v)).collect();
            let want = expected_points(readings, micros(from), micros(to), secs, agg);
            assert!(!want.is_empty());
            let got_keys: Vec<DateTime<Utc>> = got.iter().map(|p| at_micros(p.0)).collect();
            let want_keys: Vec<DateTime<Utc>> = want.iter().map(|p| at_micros(p.0)).collect();
            assert_eq!(got_keys, want_keys, "bucket starts for {bucket}/{agg} over [{from}, {to})");
            for ((t, g), (_, w)) in got.iter().zip(&want) {
                assert!(close(*g, *w), "{bucket}/{agg} at {}: got {g}, want {w}", at_micros(*t));
            }
        }
    }
    // Without `agg`, buckets average.
    let q =
        [("metric", metric.to_string()), ("from", rfc3339(from)), ("to", rfc3339(to)), ("bucket", "1h".to_string())];
    let body = json_of(history(app, token, device, &q).await, 200).await;
    assert_eq!(body["agg"], "avg", "{body}");
    let want = expected_points(readings, micros(from), micros(to), 3600, "avg");
    let got = points_of(&body);
    assert_eq!(got.len(), want.len());
    for ((t, g), (wt, w)) in got.iter().zip(&want) {
        assert_eq!(micros(*t), *wt);
        assert!(close(*g, *w), "{g} vs {w}");
    }
}

/// 1 Hz for three hours from a whole hour: a reading on every minute and hour edge.
fn dense_readings(start: DateTime<Utc>) -> BTreeMap<i64, f64> {
    (0..3 * 3600i64)
        .map(|i| {
            let x = 20.0 + 5.0 * (i as f64 / 600.0).sin() + ((i * 7919) % 13) as f64 * 0.125 - (i % 7) as f64 * 0.3;
            let v = (x * 1000.0).round() / 1000.0;
            (micros(start) + i * 1_000_000, v)
        })
        .collect()
}

/// Irregular timestamps (microsecond steps up to 45 minutes) from 30 hours before a UTC
/// midnight to 30 hours after it, plus readings exactly on and just before bucket edges.
fn irregular_readings(midnight: DateTime<Utc>) -> BTreeMap<i64, f64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        x >> 11
    };
    let m = micros(midnight);
    let mut out = BTreeMap::new();
    let mut ts = m - 30 * 3_600_000_000;
    while ts < m + 30 * 3_600_000_000 {
        // Three decimals: the shortest form of such a double has few digits, so it survives any
        // JSON number parser exactly (full precision is its own test).
        let v = ((next() % 200_000) as i64 - 100_000) as f64 / 1000.0;
        out.insert(ts, v);
        ts += 1 + (next() % 2_700_000_000) as i64;
    }
    let hour = 3_600_000_000;
    let edges = [
        m,
        m - 1,
        m + 1,
        m + hour,
        m + hour - 1,
        m + 5 * 60_000_000,
        m + 5 * 60_000_000 - 1,
        m + 60_000_000,
        m - 86_400_000_000,
        m + 86_400_000_000 - 1,
        m - 7 * hour + 13_500_000,
    ];
    for (i, e) in edges.into_iter().enumerate() {
        out.insert(e, 1000.0 + i as f64 * 1.25);
    }
    out
}

#[tokio::test]
async fn buckets_match_aggregates_computed_independently_at_1hz() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let start = this_hour() - Duration::hours(6);
    let readings = dense_readings(start);
    post_all(&app, &device_auth(&s.device), s.device.id, "air.temp", &readings).await;
    assert_eq!(stored_count(&app, s.device.id).await, 3 * 3600);
    let token = &s.gh.owner.access;

    // The whole series, and a cut through it off every edge.
    check_buckets(
        &app,
        token,
        s.device.id,
        "air.temp",
        &readings,
        start - Duration::hours(1),
        start + Duration::hours(4),
    )
    .await;
    let from = start + Duration::milliseconds(61_500);
    let to = start + Duration::seconds(2 * 3600 + 7 * 60 + 13);
    check_buckets(&app, token, s.device.id, "air.temp", &readings, from, to).await;
}

#[tokio::test]
async fn buckets_match_aggregates_computed_independently_across_days_and_edges() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let midnight = today_midnight() - Duration::days(2);
    let readings = irregular_readings(midnight);
    post_all(&app, &bearer(&s.gh.owner), s.device.id, "soil.moisture_2", &readings).await;
    let token = &s.gh.owner.access;
    let metric = "soil.moisture_2";

    check_buckets(
        &app,
        token,
        s.device.id,
        metric,
        &readings,
        midnight - Duration::days(2),
        midnight + Duration::days(2),
    )
    .await;
    // `from` exactly on a reading (included) and `to` exactly on an edge reading (excluded).
    let from = midnight - Duration::hours(7) + Duration::milliseconds(13_500);
    let to = midnight + Duration::hours(1);
    assert!(readings.contains_key(&micros(from)) && readings.contains_key(&micros(to)));
    check_buckets(&app, token, s.device.id, metric, &readings, from, to).await;

    // A point's ts is its bucket's start, the day buckets start at UTC midnight.
    let q = [
        ("metric", metric.to_string()),
        ("from", rfc3339(midnight - Duration::days(2))),
        ("to", rfc3339(midnight + Duration::days(2))),
        ("bucket", "1d".to_string()),
        ("agg", "count".to_string()),
    ];
    let body = json_of(history(&app, token, s.device.id, &q).await, 200).await;
    let days: Vec<DateTime<Utc>> = points_of(&body).into_iter().map(|p| p.0).collect();
    let want: Vec<DateTime<Utc>> = (-2..=1).map(|d| midnight + Duration::days(d)).collect();
    assert_eq!(days, want, "{body}");
    let total: f64 = points_of(&body).iter().map(|p| p.1).sum();
    assert_eq!(total, readings.len() as f64);

    // An empty range is 200 with no points; so is another metric.
    for (m, from, to) in [
        (metric, midnight + Duration::days(3), midnight + Duration::days(3) + Duration::hours(5)),
        ("air.temp", midnight - Duration::days(2), midnight + Duration::days(2)),
    ] {
        for bucket in [Some("5m"), None] {
            let mut q = vec![("metric", m.to_string()), ("from", rfc3339(from)), ("to", rfc3339(to))];
            if let Some(b) = bucket {
                q.push(("bucket", b.to_string()));
            }
            let body = json_of(history(&app, token, s.device.id, &q).await, 200).await;
            assert_eq!(body["points"], json!([]), "{body}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// History: raw readings and parameters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn raw_pages_reassemble_exactly_the_stored_readings() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let token = &s.gh.owner.access;
    let midnight = today_midnight() - Duration::days(2);
    let readings = irregular_readings(midnight);
    post_all(&app, &device_auth(&s.device), s.device.id, "soil.moisture_2", &readings).await;
    let all: Vec<(DateTime<Utc>, f64)> = readings.iter().map(|(&t, &v)| (at_micros(t), v)).collect();
    let (from, to) = (midnight - Duration::days(2), midnight + Duration::days(2));

    for limit in [1, 17, 100, all.len() as u64, 10_000] {
        let got = all_raw(&app, token, s.device.id, "soil.moisture_2", from, to, limit).await;
        assert_eq!(got, all, "pages of {limit}");
    }
    // A range cut on readings: from included, to excluded.
    let from = midnight - Duration::hours(7) + Duration::milliseconds(13_500);
    let to = midnight + Duration::hours(1);
    let want: Vec<_> = all.iter().copied().filter(|(t, _)| *t >= from && *t < to).collect();
    assert_eq!(want.first().unwrap().0, from);
    let got = all_raw(&app, token, s.device.id, "soil.moisture_2", from, to, 7).await;
    assert_eq!(got, want);

    // Default and largest page sizes, on a series longer than both.
    let start = this_hour() - Duration::hours(5);
    let dense = dense_readings(start);
    post_all(&app, &device_auth(&s.device), s.device.id, "air.temp", &dense).await;
    let range =
        [("metric", "air.temp".to_string()), ("from", rfc3339(start)), ("to", rfc3339(start + Duration::hours(4)))];
    let body = json_of(history(&app, token, s.device.id, &range).await, 200).await;
    assert_eq!(body["meta"]["limit"], 1000, "{body}");
    assert_eq!(body["meta"]["hasMore"], true);
    let page = points_of(&body);
    assert_eq!(page.len(), 1000);
    assert_eq!(page[0], (start, dense[&micros(start)]));
    assert!(page.windows(2).all(|w| w[0].0 < w[1].0), "time order");

    let mut q = range.to_vec();
    q.push(("limit", "50000".to_string()));
    let body = json_of(history(&app, token, s.device.id, &q).await, 200).await;
    let first = points_of(&body);
    assert_eq!(first.len(), 10_000, "at most 10000 per page");
    assert_eq!(body["meta"]["hasMore"], true);
    q.push(("cursor", body["meta"]["nextCursor"].as_str().unwrap().to_string()));
    let body = json_of(history(&app, token, s.device.id, &q).await, 200).await;
    let second = points_of(&body);
    assert_eq!(body["meta"]["hasMore"], false, "{}", body["meta"]);
    let joined: Vec<_> = first.into_iter().chain(second).collect();
    let want: Vec<_> = dense.iter().map(|(&t, &v)| (at_micros(t), v)).collect();
    assert_eq!(joined, want);
}

#[tokio::test]
async fn history_parameters_are_validated() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let token = &s.gh.owner.access;
    let path = format!("/api/v1/devices/{}/telemetry", s.device.id);
    let now = Utc::now();
    let (from, to) = (rfc3339(now - Duration::hours(2)), rfc3339(now));
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "metric"),
        (vec![("metric", String::new())], "metric"),
        (vec![("metric", "Air".into())], "metric"),
        (vec![("metric", "air.temp".into()), ("bucket", "2m".into())], "bucket"),
        (vec![("metric", "air.temp".into()), ("bucket", "1H".into())], "bucket"),
        (vec![("metric", "air.temp".into()), ("bucket", "1h".into()), ("agg", "median".into())], "agg"),
        (vec![("metric", "air.temp".into()), ("agg", "avg".into())], "agg"),
        (vec![("metric", "air.temp".into()), ("from", to.clone()), ("to", from.clone())], "from"),
        (vec![("metric", "air.temp".into()), ("from", to.clone()), ("to", to.clone())], "from"),
        (vec![("metric", "air.temp".into()), ("from", "yesterday".into())], "from"),
        (vec![("metric", "air.temp".into()), ("to", "2026-02-30T00:00:00Z".into())], "to"),
        (vec![("metric", "air.temp".into()), ("limit", "0".into())], "limit"),
        (vec![("metric", "air.temp".into()), ("limit", "abc".into())], "limit"),
        (vec![("metric", "air.temp".into()), ("cursor", "%%%".into())], "cursor"),
        (vec![("metric", "air.temp".into()), ("cursor", "bm90LWEtY3Vyc29y".into())], "cursor"),
    ];
    for (q, field) in cases {
        let err = assert_error(history(&app, token, s.device.id, &q).await, 400, &path).await;
        let named = err["details"].as_array().is_some_and(|d| d.iter().any(|e| e["field"] == field));
        assert!(named, "{q:?}: expected {field} in {err}");
    }
    // The valid forms of the same parameters.
    for (bucket, agg) in [("1m", "avg"), ("5m", "min"), ("1h", "max"), ("1d", "sum"), ("1h", "count"), ("1h", "last")] {
        let q = [
            ("metric", "air.temp".to_string()),
            ("from", from.clone()),
            ("to", to.clone()),
            ("bucket", bucket.to_string()),
            ("agg", agg.to_string()),
        ];
        let body = json_of(history(&app, token, s.device.id, &q).await, 200).await;
        assert_eq!(body["points"], json!([]), "{body}");
    }
    // Default range: the last 24 hours up to now.
    let t = Utc::now() - Duration::hours(23);
    let body = json!([
        reading(s.device.id, "air.temp", 4.5, t),
        reading(s.device.id, "air.temp", 5.5, t - Duration::hours(2))
    ]);
    assert_eq!(accepted(post_batch(&app, &device_auth(&s.device), &body).await).await, (2, 0));
    let body = json_of(history(&app, token, s.device.id, &[("metric", "air.temp".to_string())]).await, 200).await;
    assert_eq!(points_of(&body), vec![(DateTime::from_timestamp_micros(micros(t)).unwrap(), 4.5)], "{body}");
    let span = parse_ts(&body["to"]) - parse_ts(&body["from"]);
    assert_eq!(span, Duration::hours(24), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_ingested_duplicate_and_rejected_readings() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let t0 = this_hour() - Duration::hours(2);
    let items = json!(series(s.device.id, "air.temp", t0, 30));
    accepted(post_batch(&app, &auth, &items).await).await;
    accepted(post_batch(&app, &auth, &items).await).await;
    refused(post_batch(&app, &auth, &json!([])).await, 400, &["items"]).await;
    let res = app.client.post(app.url(BATCH)).header("authorization", &auth).body("[]").send().await.unwrap();
    assert_error(res, 415, BATCH).await;

    let text = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "telemetry_readings_ingested_total{source=\"http\"} 30",
        "telemetry_readings_duplicate_total{source=\"http\"} 30",
        "telemetry_rejected_total{source=\"http\",reason=\"invalid\"} 1",
        "telemetry_rejected_total{source=\"http\",reason=\"content_type\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("# TYPE telemetry_readings_ingested counter"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

/// Day partitions of `sensor_readings` on PostgreSQL (empty on SQLite).
async fn partition_days(app: &TestApp) -> Vec<String> {
    let db = &app.state.db;
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Vec::new();
    }
    let stmt = Statement::from_string(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'sensor_readings' ORDER BY 1",
    );
    db.query_all_raw(stmt).await.unwrap().iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

#[tokio::test]
async fn retention_removes_readings_older_than_the_configured_days_and_keeps_the_rest() {
    // The old readings go in through an app without retention: an app with it runs the same
    // maintenance at start, which could otherwise remove them before they are counted.
    let app = spawn_app().await;
    let s = setup(&app).await;
    let now = Utc::now();
    // Old readings cannot come in through the API (the accepted window follows retention), so
    // they are written the way a long-running install would have stored them.
    let at = |ago: Duration, metric: &str| mash::telemetry::store::Reading {
        device_id: s.device.id,
        metric: metric.into(),
        ts: DateTime::from_timestamp_micros((now - ago).timestamp_micros()).unwrap(),
        value: 1.0,
    };
    let mut rows = vec![
        at(Duration::days(5), "t"),
        at(Duration::days(5) + Duration::minutes(1), "t"),
        at(Duration::days(4), "h"),
        at(Duration::hours(1), "t"),
        at(Duration::minutes(5), "h"),
    ];
    let partitions = mash::telemetry::store::Partitions::default();
    mash::telemetry::store::insert(&app.state.db, &partitions, &mut rows, &[]).await.unwrap();
    assert_eq!(stored_count(&app, s.device.id).await, 5);
    let old_day = format!("sensor_readings_p{}", (now - Duration::days(5)).format("%Y%m%d"));
    if app.state.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        assert!(partition_days(&app).await.contains(&old_day), "the old day got its partition");
    }

    let pruner = app.spawn_sibling(&[("TELEMETRY_RETENTION_DAYS", "2")]).await;
    mash::telemetry::maintenance::run_once(&pruner.state).await.unwrap();

    assert_eq!(stored_count(&app, s.device.id).await, 2, "only the last two days remain");
    let body = json_of(
        get_authed(
            &app,
            &format!(
                "/api/v1/devices/{}/telemetry?metric=t&from={}",
                s.device.id,
                (now - Duration::days(10)).to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            &s.gh.owner.access,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["points"].as_array().unwrap().len(), 1, "{body}");
    if app.state.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let days = partition_days(&app).await;
        assert!(!days.contains(&old_day), "whole old partitions are dropped: {days:?}");
        let today = format!("sensor_readings_p{}", now.format("%Y%m%d"));
        let ahead = format!("sensor_readings_p{}", (now + Duration::days(3)).format("%Y%m%d"));
        assert!(days.contains(&today) && days.contains(&ahead), "partitions are kept ahead: {days:?}");
    }
    // A second round changes nothing.
    mash::telemetry::maintenance::run_once(&pruner.state).await.unwrap();
    assert_eq!(stored_count(&app, s.device.id).await, 2);
}
