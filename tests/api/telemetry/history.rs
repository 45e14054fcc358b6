//! History (`GET /devices/{id}/telemetry`): UTC-aligned buckets checked against aggregates
//! computed here, raw readings paged by cursor, and the validation of its parameters.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::json_of,
    assert_error,
    greenhouse::{accepted, bearer, device_auth, post_batch, reading},
    spawn_app,
    telemetry::{all_raw, history, parse_ts, points_of, rfc3339, stored_count, this_hour},
};

use super::{at_micros, micros, setup, today_midnight};

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
