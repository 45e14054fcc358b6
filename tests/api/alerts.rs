//! Alert rules and alerts: every rule kind, the alert lifecycle and tenancy, with the job
//! queue driven by the test (`JOB_CONCURRENCY=0`, `run_jobs`) and time moved by the app's clock.
//!
//! Time in these tests is the readings' own `ts` (a base an hour ago plus seconds), except for
//! `stale`, which compares with `app.state.clock`; readings for it are stamped with that clock.

use chrono::{DateTime, Duration, Utc};
use mash::{
    alerts::evaluate::CheckStale,
    jobs::entity as job,
    realtime::hub::{Delivery, Outlet},
};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use crate::helpers::{
    NO_WORKERS, TestApp,
    accounts::{Account, audit_rows, authed, get_authed, json_of, register, user_with_role},
    alerts::{alert_action, alert_path, alerts_of, list_alerts, new_rule, post_rule, rules_path},
    assert_error, detail_fields,
    greenhouse::{
        Greenhouse, add_member, bearer, create_device, greenhouse, greenhouse_by, post_batch, reading, send_readings,
    },
    quiet_app, spawn_app_with, ts_of,
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

/// Runs one stale check now (by the app's clock).
async fn check_stale(app: &TestApp) {
    mash::jobs::enqueue(&app.state.db, &CheckStale::default()).await.unwrap();
    app.run_jobs().await;
}

/// An independent EWMA anomaly detector: for each reading, whether it breaches the baseline
/// built from the readings before it (mean/variance per the documented update).
fn anomaly_breaches(series: &[f64], alpha: f64, warmup: i64, k: f64) -> Vec<bool> {
    let (mut mean, mut var, mut n) = (0.0_f64, 0.0_f64, 0_i64);
    series
        .iter()
        .map(|&x| {
            let sd = var.max(0.0).sqrt();
            let breach = n >= warmup && sd > 0.0 && (x - mean).abs() > k * sd;
            if n == 0 {
                mean = x;
                var = 0.0;
            } else {
                let diff = x - mean;
                let incr = alpha * diff;
                mean += incr;
                var = (1.0 - alpha) * (var + diff * incr);
            }
            n += 1;
            breach
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rule kinds
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_threshold_rule_opens_one_alert_and_publishes_it() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], axum::Router::new()).await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = authed(&app, Method::POST, "/api/v1/alert-rules", &gh.owner.access)
        .json(&json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0, "severity": "critical", "enabled": true}))
        .send()
        .await
        .unwrap();
    let rule = json_of(rule, 201).await;
    let mut events = watch(&app, gh.grower_id);
    let t0 = Utc::now() - Duration::minutes(5);
    let batch = json!([reading(dev.id, "temp", 31.0, t0), reading(dev.id, "temp", 35.0, t0 + Duration::seconds(1))]);
    assert_eq!(post_batch(&app, &bearer(&gh.owner), &batch).await.status(), 202);
    assert!(app.run_jobs().await >= 2);
    let list: Value =
        json_of(get_authed(&app, &format!("/api/v1/alerts?growerId={}", gh.grower_id), &gh.owner.access).await, 200)
            .await;
    assert_eq!(list["meta"]["total"], 1, "{list}");
    let a = &list["data"][0];
    assert_eq!(a["ruleId"], rule["id"]);
    assert_eq!(a["status"], "active");
    assert_eq!(a["value"], 35.0);
    assert_eq!(a["count"], 2);
    let e = alert_events(&mut events, gh.grower_id);
    assert_eq!(changes(&e).first(), Some(&"created"), "an event was published: {e:?}");
}

#[tokio::test]
async fn threshold_for_seconds_waits_then_fires_resolves_and_starts_over() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "deviceId": dev.id, "metric": "temp", "kind": "threshold", "op": "gt",
               "threshold": 30.0, "forSeconds": 60, "severity": "warning"}),
    )
    .await;
    assert_eq!(rule["forSeconds"], 60);
    assert_eq!(rule["autoResolve"], true, "autoResolve defaults to true: {rule}");
    let mut rx = watch(&app, gh.grower_id);
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);

    // Breaching for 59 s: not long enough.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, at(0)), reading(dev.id, "temp", 32.0, at(59))]).await;
    assert!(alerts_of(&app, &gh).await.is_empty(), "fired before forSeconds");
    assert!(alert_events(&mut rx, gh.grower_id).is_empty());

    // 60 s after the first breaching reading (in a later batch: the streak is kept): fires.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 33.0, at(60))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let first = &list[0];
    assert_eq!(first["status"], "active");
    assert_eq!(first["value"], 33.0);
    assert_eq!(first["count"], 1);
    assert_eq!(first["ruleId"], rule["id"]);
    assert_eq!(first["deviceId"], dev.id.to_string());
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["metric"], "temp");
    let msg = first["message"].as_str().unwrap();
    assert!(msg.contains("60"), "the message names the duration: {msg}");
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["created"]);
    assert_eq!(ev[0]["alert"]["id"], first["id"]);

    // A normal reading clears and resolves it (by the rule: no resolvedBy).
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 20.0, at(70))]).await;
    let resolved = get_alert(&app, &gh.owner, &first["id"]).await;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert!(resolved["resolvedAt"].is_string(), "{resolved}");
    assert!(resolved.get("resolvedBy").is_none_or(Value::is_null), "{resolved}");
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["resolved"]);
    assert_eq!(ev[0]["alert"]["id"], first["id"]);
    assert_eq!(ev[0]["alert"]["status"], "resolved");

    // A new streak starts over: 59 s of breaching is again not enough...
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, at(80)), reading(dev.id, "temp", 35.0, at(139))]).await;
    assert_eq!(alerts_of(&app, &gh).await.len(), 1, "the new streak fired before forSeconds");
    assert!(alert_events(&mut rx, gh.grower_id).is_empty());
    // ...and 60 s is: a new alert.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 36.0, at(140))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let second = list.iter().find(|a| a["status"] == "active").expect("a new active alert");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["value"], 36.0);
    assert_eq!(second["count"], 1);
    assert_eq!(changes(&alert_events(&mut rx, gh.grower_id)), ["created"]);
}

#[tokio::test]
async fn outside_and_lt_compare_with_their_bounds() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let outside = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "humidity", "kind": "threshold", "op": "outside",
               "low": 10.0, "high": 20.0, "severity": "info"}),
    )
    .await;
    let lt = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "ph", "kind": "threshold", "op": "lt", "threshold": 5.5,
               "severity": "critical"}),
    )
    .await;
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);
    // Bounds are inside the band: 10 and 20 do not breach; 9 and 20.5 do.
    let humidity = [(15.0, 0), (9.0, 1), (10.0, 2), (20.0, 3), (20.5, 4)];
    // 5.5 does not breach `lt 5.5`; 5.4 does.
    let ph = [(6.0, 0), (5.5, 1), (5.4, 2)];
    let mut items: Vec<Value> = humidity.iter().map(|(v, s)| reading(dev.id, "humidity", *v, at(*s))).collect();
    items.extend(ph.iter().map(|(v, s)| reading(dev.id, "ph", *v, at(*s))));
    send(&app, &gh.owner, items).await;

    let list = alerts_of(&app, &gh).await;
    let of = |rule: &Value| list.iter().filter(|a| a["ruleId"] == rule["id"]).cloned().collect::<Vec<_>>();
    let hum = of(&outside);
    assert_eq!(hum.len(), 2, "9 opened one (closed by 10), 20.5 another: {hum:?}");
    let below = hum.iter().find(|a| a["value"] == 9.0).expect("the alert for 9 below the band");
    assert_eq!(below["status"], "resolved", "10 is inside the band and clears: {below}");
    assert_eq!(below["count"], 1);
    let above = hum.iter().find(|a| a["value"] == 20.5).expect("the alert for 20.5 above the band");
    assert_eq!(above["status"], "active");
    assert_eq!(above["count"], 1, "20 is not above 20: {above}");
    assert_eq!(above["severity"], "info");

    let ph_alerts = of(&lt);
    assert_eq!(ph_alerts.len(), 1, "{ph_alerts:?}");
    assert_eq!(ph_alerts[0]["value"], 5.4);
    assert_eq!(ph_alerts[0]["count"], 1, "5.5 is not below 5.5");
    assert_eq!(ph_alerts[0]["status"], "active");
    assert_eq!(ph_alerts[0]["severity"], "critical");

    // And back above the limit clears the lt rule.
    send(&app, &gh.owner, vec![reading(dev.id, "ph", 7.0, at(10))]).await;
    assert_eq!(get_alert(&app, &gh.owner, &ph_alerts[0]["id"]).await["status"], "resolved");
}

#[tokio::test]
async fn rate_is_change_per_minute_across_batches() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "rate", "op": "gt", "threshold": 2.0,
               "severity": "warning"}),
    )
    .await;
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);

    // +1.5 in one minute: 1.5/min, below 2/min (per second it would be far below too, but a
    // per-minute rate must not fire here either).
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 10.0, at(0)), reading(dev.id, "temp", 11.5, at(60))]).await;
    assert!(alerts_of(&app, &gh).await.is_empty());

    // Next batch: +1.5 in 30 s against the previous batch's last reading = 3/min. (Against the
    // first reading it would be 2/min, and from this batch alone there is no rate at all.)
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 13.0, at(90))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["value"], 13.0);
    let msg = list[0]["message"].as_str().unwrap();
    assert!(msg.contains("3.0000"), "the message carries the rate per minute: {msg}");

    // +1 in one minute: 1/min clears it.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 14.0, at(150))]).await;
    assert_eq!(get_alert(&app, &gh.owner, &list[0]["id"]).await["status"], "resolved");

    // A falling rate with `lt`: -4/min fires on a rule watching drops.
    new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "level", "kind": "rate", "op": "lt", "threshold": -3.0,
               "severity": "info"}),
    )
    .await;
    send(&app, &gh.owner, vec![reading(dev.id, "level", 50.0, at(0)), reading(dev.id, "level", 48.0, at(60))]).await;
    send(&app, &gh.owner, vec![reading(dev.id, "level", 46.0, at(90))]).await;
    let falling: Vec<Value> = alerts_of(&app, &gh).await.into_iter().filter(|a| a["metric"] == "level").collect();
    assert_eq!(falling.len(), 1, "{falling:?}");
    assert_eq!(falling[0]["value"], 46.0);
}

#[tokio::test]
async fn stale_fires_once_after_for_seconds_and_a_reading_resolves_it() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let reporting = create_device(&app, &gh.owner, gh.grower_id, "reporting").await;
    let silent = create_device(&app, &gh.owner, gh.grower_id, "silent").await;
    // Both devices are old by the time the rule appears.
    app.state.clock.advance(Duration::seconds(1000));
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "stale", "forSeconds": 300, "severity": "warning"}),
    )
    .await;
    let rule_created = ts_of(&rule["createdAt"]);
    let mut rx = watch(&app, gh.grower_id);

    // Readings for `stale` are stamped with the app's clock (within the hour the API allows ahead).
    let last = app.state.clock.now();
    send(&app, &gh.owner, vec![reading(reporting.id, "temp", 20.0, last)]).await;
    check_stale(&app).await;
    assert!(alerts_of(&app, &gh).await.is_empty(), "nothing is stale yet (the silent device is older than 300 s)");

    app.state.clock.advance(Duration::seconds(200));
    check_stale(&app).await;
    assert!(alerts_of(&app, &gh).await.is_empty(), "200 s is not 300 s");
    assert!(alert_events(&mut rx, gh.grower_id).is_empty());

    app.state.clock.advance(Duration::seconds(150));
    let before = app.state.clock.now();
    check_stale(&app).await;
    let after = app.state.clock.now();
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 2, "one alert per stale device: {list:?}");
    let of = |d: Uuid| list.iter().find(|a| a["deviceId"] == d.to_string()).cloned().expect("an alert for the device");
    let a = of(reporting.id);
    let b = of(silent.id);
    for (alert, since) in [(&a, last), (&b, rule_created)] {
        assert_eq!(alert["status"], "active");
        assert_eq!(alert["ruleId"], rule["id"]);
        assert_eq!(alert["count"], 1);
        let value = alert["value"].as_f64().unwrap();
        // `since` as the API shows it may carry more precision than the database keeps: +1 s.
        let (lo, hi) = ((before - since).num_seconds() as f64, (after - since).num_seconds() as f64 + 1.0);
        assert!(lo <= value && value <= hi, "value {value} is the seconds without a reading ({lo}..={hi})");
        assert!(value >= 300.0);
    }
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["created", "created"]);

    // Checking again changes nothing: no second alert, no count or value bump, no event.
    app.state.clock.advance(Duration::seconds(100));
    check_stale(&app).await;
    let again = alerts_of(&app, &gh).await;
    assert_eq!(again.len(), 2);
    for (alert, was) in [(of(reporting.id), &a), (of(silent.id), &b)] {
        let now = again.iter().find(|x| x["id"] == alert["id"]).unwrap();
        assert_eq!(now["count"], 1, "{now}");
        assert_eq!(now["value"], was["value"], "{now}");
        assert_eq!(now["lastSeenAt"], was["lastSeenAt"], "{now}");
    }
    assert!(alert_events(&mut rx, gh.grower_id).is_empty(), "a repeated check is not news");

    // A reading resolves the reporting device's alert; the silent one stays.
    send(&app, &gh.owner, vec![reading(reporting.id, "temp", 21.0, app.state.clock.now())]).await;
    assert_eq!(get_alert(&app, &gh.owner, &a["id"]).await["status"], "resolved");
    assert_eq!(get_alert(&app, &gh.owner, &b["id"]).await["status"], "active");
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["resolved"]);
    assert_eq!(ev[0]["alert"]["id"], a["id"]);
    // ...and it is not stale again right away.
    check_stale(&app).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list.iter().filter(|x| x["status"] == "active").count(), 1);
}

#[tokio::test]
async fn anomaly_fires_exactly_where_an_independent_ewma_says_and_survives_a_restart() {
    // The default detector: alpha 0.1, 20 readings of warm-up, k = 3.
    let mut series: Vec<f64> =
        (0..40).map(|i| 20.0 + [0.12, -0.08, 0.05, -0.15, 0.10, -0.03, 0.07, -0.11, 0.02, 0.09][i % 10]).collect();
    series[5] = 27.0; // an outlier during warm-up
    series[30] = 20.6; // a bump, within 3σ
    series.push(23.0); // the spike (index 40)
    series.push(20.05); // back to normal (index 41)
    let expected = anomaly_breaches(&series, 0.1, 20, 3.0);
    let spike = expected.iter().position(|b| *b).expect("the series breaches somewhere");
    assert_eq!(spike, 40, "the test series is meant to breach first at the spike");
    assert!(!expected[41]);
    assert!(
        anomaly_breaches(&series, 0.1, 2, 3.0)[5],
        "the early outlier would breach if warm-up were not honoured (so the test can tell)"
    );
    assert!(
        !anomaly_breaches(&series[..=40], 0.1, 20, 3.0)[..40].iter().any(|b| *b),
        "nothing before the spike breaches"
    );

    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap().to_string();
    let overrides = [("JOB_CONCURRENCY", "0"), ("MASH_DATA_DIR", dir.as_str())];
    let mut first = spawn_app_with(&overrides, axum::Router::new()).await;
    let gh = greenhouse(&first).await;
    let dev = create_device(&first, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &first,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "anomaly", "severity": "warning"}),
    )
    .await;
    assert!(rule["alpha"].is_null() && rule["warmupSamples"].is_null(), "defaults are not stored: {rule}");
    let t0 = base();
    let at = |i: usize| t0 + Duration::seconds(10 * i as i64);

    // Half the series through the first process, one reading per batch, checking each step.
    let half = 25;
    for (i, v) in series.iter().enumerate().take(half) {
        send(&first, &gh.owner, vec![reading(dev.id, "temp", *v, at(i))]).await;
        assert!(alerts_of(&first, &gh).await.is_empty(), "no alert may open at reading {i} ({v})");
    }

    // A restart: the baseline lives in the database.
    first.begin_shutdown().await.unwrap().unwrap();
    let second = first.spawn_sibling(&overrides).await;
    for (i, v) in series.iter().enumerate().skip(half) {
        send(&second, &gh.owner, vec![reading(dev.id, "temp", *v, at(i))]).await;
        let list = alerts_of(&second, &gh).await;
        if i < spike {
            assert!(list.is_empty(), "no alert may open at reading {i} ({v}): {list:?}");
        } else if i == spike {
            assert_eq!(list.len(), 1, "{list:?}");
            assert_eq!(list[0]["status"], "active");
            assert_eq!(list[0]["value"], 23.0, "the alert opens on the spike itself");
            assert_eq!(list[0]["count"], 1);
            assert_eq!(list[0]["ruleId"], rule["id"]);
        } else {
            assert_eq!(list.len(), 1, "{list:?}");
            assert_eq!(list[0]["status"], "resolved", "a normal reading clears the anomaly");
        }
    }
}

#[tokio::test]
async fn anomaly_honours_alpha_warmup_and_k_reading_by_reading() {
    let (alpha, warmup, k) = (0.3, 5_i64, 2.0);
    let series = [
        10.0, 30.0, 10.4, 9.7, 10.1, // warm-up (30 would breach anything warmed up)
        10.2, 9.9, 13.0, 10.0, 10.1, 9.8, 10.3, 6.0, 10.0, 10.2, 9.9, 10.1, 10.0, 14.0, 14.5, 10.1,
    ];
    let expected = anomaly_breaches(&series, alpha, warmup, k);
    assert!(expected.iter().filter(|b| **b).count() >= 2, "the series fires more than once: {expected:?}");
    assert!(expected[warmup as usize..].iter().any(|b| !*b));
    assert_ne!(
        expected,
        anomaly_breaches(&series, 0.1, 20, 3.0),
        "the explicit parameters make a difference the test can see"
    );

    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "deviceId": dev.id, "metric": "temp", "kind": "anomaly", "threshold": k,
               "alpha": alpha, "warmupSamples": warmup, "severity": "info"}),
    )
    .await;
    assert_eq!(rule["alpha"], alpha);
    assert_eq!(rule["warmupSamples"], warmup);
    let t0 = base();
    for (i, (v, breach)) in series.iter().zip(&expected).enumerate() {
        send(&app, &gh.owner, vec![reading(dev.id, "temp", *v, t0 + Duration::seconds(i as i64))]).await;
        let active = list_alerts(&app, &gh.owner, &format!("growerId={}&status=active", gh.grower_id)).await;
        let active = active["data"].as_array().unwrap();
        if *breach {
            assert_eq!(active.len(), 1, "reading {i} ({v}) breaches: {active:?}");
            assert_eq!(active[0]["value"], *v, "reading {i}");
        } else {
            assert!(active.is_empty(), "reading {i} ({v}) does not breach: {active:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The alert lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn repeats_update_the_one_open_alert_and_auto_resolve_false_keeps_it_open() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "warning", "autoResolve": false}),
    )
    .await;
    assert_eq!(rule["autoResolve"], false);
    let mut rx = watch(&app, gh.grower_id);
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);

    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, at(0))]).await;
    let opened = alerts_of(&app, &gh).await;
    assert_eq!(opened.len(), 1);
    let id = opened[0]["id"].clone();
    let first_seen = ts_of(&opened[0]["lastSeenAt"]);

    send(&app, &gh.owner, vec![reading(dev.id, "temp", 32.0, at(1))]).await;
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 33.0, at(2)), reading(dev.id, "temp", 34.0, at(3))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "repeats do not pile up: {list:?}");
    let a = &list[0];
    assert_eq!(a["id"], id);
    assert_eq!(a["count"], 4);
    assert_eq!(a["value"], 34.0, "the latest breaching value");
    assert!(a["message"].as_str().unwrap().contains("34"), "{a}");
    assert!(ts_of(&a["lastSeenAt"]) >= first_seen);
    assert_eq!(a["createdAt"], opened[0]["createdAt"]);
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["created", "updated", "updated"], "one update per batch");
    assert_eq!(ev[2]["alert"]["count"], 4);
    assert_eq!(ev[2]["alert"]["value"], 34.0);

    // autoResolve=false: a normal reading does not resolve it.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 20.0, at(4))]).await;
    let a = get_alert(&app, &gh.owner, &id).await;
    assert_eq!(a["status"], "active", "{a}");
    assert_eq!(a["count"], 4);
    assert!(alert_events(&mut rx, gh.grower_id).is_empty());
    // And breaching again updates the same alert.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 35.0, at(5))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["count"], 5);
    assert_eq!(list[0]["value"], 35.0);
}

#[tokio::test]
async fn ack_and_resolve_move_the_alert_and_are_audited_and_announced() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "critical"}),
    )
    .await;
    let mut rx = watch(&app, gh.grower_id);
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, at(0))]).await;
    let id = alerts_of(&app, &gh).await[0]["id"].clone();

    // A MEMBER (not an owner) acknowledges.
    let acked = json_of(alert_action(&app, &member, &id, "ack").await, 200).await;
    assert_eq!(acked["id"], id);
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledgedBy"], member.id.to_string());
    assert!(acked["acknowledgedAt"].is_string(), "{acked}");
    assert!(acked.get("resolvedAt").is_none_or(Value::is_null));
    // Again (by someone else): 200, unchanged.
    let again = json_of(alert_action(&app, &gh.owner, &id, "ack").await, 200).await;
    assert_eq!(again["status"], "acknowledged");
    assert_eq!(again["acknowledgedBy"], member.id.to_string());
    assert_eq!(again["acknowledgedAt"], acked["acknowledgedAt"]);
    let acks = audit_rows(&app, "alert.acknowledge").await;
    assert_eq!(acks.len(), 1, "only the real acknowledgement is audited: {acks:?}");
    assert_eq!(acks[0].user_id, Some(member.id));
    assert_eq!(acks[0].resource_type.as_deref(), Some("alert"));
    assert_eq!(acks[0].resource_id.as_deref(), id.as_str());

    // A repeat updates the acknowledged alert, which stays acknowledged.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 32.0, at(1))]).await;
    let a = get_alert(&app, &gh.owner, &id).await;
    assert_eq!(a["status"], "acknowledged");
    assert_eq!(a["count"], 2);
    assert_eq!(a["value"], 32.0);

    // The owner resolves it.
    let resolved = json_of(alert_action(&app, &gh.owner, &id, "resolve").await, 200).await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolvedBy"], gh.owner.id.to_string());
    assert!(resolved["resolvedAt"].is_string());
    assert_eq!(resolved["acknowledgedBy"], member.id.to_string(), "the acknowledgement is kept");
    assert_eq!(resolved["count"], 2);
    let path = format!("{}/resolve", alert_path(&id));
    assert_error(alert_action(&app, &gh.owner, &id, "resolve").await, 409, &path).await;
    let path = format!("{}/ack", alert_path(&id));
    assert_error(alert_action(&app, &member, &id, "ack").await, 409, &path).await;
    let res = audit_rows(&app, "alert.resolve").await;
    assert_eq!(res.len(), 1, "{res:?}");
    assert_eq!(res[0].user_id, Some(gh.owner.id));
    assert_eq!(res[0].resource_id.as_deref(), id.as_str());
    assert_eq!(audit_rows(&app, "alert.acknowledge").await.len(), 1, "a refused ack is not audited");

    // The ack and resolve announcements go out through the queue, in order.
    app.run_jobs().await;
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["created", "acknowledged", "updated", "resolved"]);
    assert_eq!(ev[1]["alert"]["status"], "acknowledged");
    assert_eq!(ev[1]["alert"]["acknowledgedBy"], member.id.to_string());
    assert_eq!(ev[3]["alert"]["status"], "resolved");
    assert_eq!(ev[3]["alert"]["resolvedBy"], gh.owner.id.to_string());

    // The rule firing again opens a new alert.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 33.0, at(2))]).await;
    let active = list_alerts(&app, &gh.owner, &format!("growerId={}&status=active", gh.grower_id)).await;
    assert_eq!(active["meta"]["total"], 1, "{active}");
    let fresh = &active["data"][0];
    assert_ne!(fresh["id"], id, "a resolved alert is never reopened");
    assert_eq!(fresh["count"], 1);
    assert_eq!(fresh["value"], 33.0);
    assert_eq!(get_alert(&app, &gh.owner, &id).await["status"], "resolved");
    assert_eq!(changes(&alert_events(&mut rx, gh.grower_id)), ["created"]);

    // The list filters.
    let g = gh.grower_id;
    let resolved = list_alerts(&app, &gh.owner, &format!("growerId={g}&status=resolved")).await;
    assert_eq!(resolved["meta"]["total"], 1);
    assert_eq!(resolved["data"][0]["id"], id);
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&status=acknowledged")).await["meta"]["total"], 0);
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&severity=critical")).await["meta"]["total"], 2);
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&severity=info")).await["meta"]["total"], 0);
    let by_device = list_alerts(&app, &gh.owner, &format!("growerId={g}&deviceId={}", dev.id)).await;
    assert_eq!(by_device["meta"]["total"], 2);
    let other_device = list_alerts(&app, &gh.owner, &format!("growerId={g}&deviceId={}", Uuid::now_v7())).await;
    assert_eq!(other_device["meta"]["total"], 0);
    let bad = get_authed(&app, &format!("/api/v1/alerts?growerId={g}&status=open"), &gh.owner.access).await;
    assert_eq!(detail_fields(&assert_error(bad, 400, "/api/v1/alerts").await), ["status"]);
    let bad = get_authed(&app, &format!("/api/v1/alerts?growerId={g}&severity=urgent"), &gh.owner.access).await;
    assert_eq!(detail_fields(&assert_error(bad, 400, "/api/v1/alerts").await), ["severity"]);
}

// ---------------------------------------------------------------------------------------------
// Tenancy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn growers_reach_only_their_own_alerts_and_rules() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let other = greenhouse_by(&app, &gh.admin).await;
    let outsider = &other.owner;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "mine").await;
    let theirs = create_device(&app, &other.owner, other.grower_id, "theirs").await;
    let rule_body = |g: Uuid| json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0, "severity": "warning"});
    let rule = new_rule(&app, &gh.owner, rule_body(gh.grower_id)).await;
    new_rule(&app, &other.owner, rule_body(other.grower_id)).await;
    let t0 = base();
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, t0)]).await;
    send(&app, &other.owner, vec![reading(theirs.id, "temp", 32.0, t0)]).await;
    let id = alerts_of(&app, &gh).await[0]["id"].clone();
    let their_alert = alerts_of(&app, &other).await[0]["id"].clone();

    // Another grower's owner: everything of this grower answers 404.
    let path = alert_path(&id);
    assert_error(get_authed(&app, &path, &outsider.access).await, 404, &path).await;
    for action in ["ack", "resolve"] {
        let p = format!("{path}/{action}");
        assert_error(alert_action(&app, outsider, &id, action).await, 404, &p).await;
    }
    let rp = rule_path(&rule["id"]);
    assert_error(patch_rule(&app, outsider, &rule["id"], json!({"enabled": false})).await, 404, &rp).await;
    let res = authed(&app, Method::DELETE, &rp, &outsider.access).send().await.unwrap();
    assert_error(res, 404, &rp).await;
    let res = get_authed(&app, &format!("/api/v1/alerts?growerId={}", gh.grower_id), &outsider.access).await;
    assert_error(res, 404, "/api/v1/alerts").await;
    let res = get_authed(&app, &format!("/api/v1/alert-rules?growerId={}", gh.grower_id), &outsider.access).await;
    assert_error(res, 404, rules_path()).await;
    assert_error(post_rule(&app, outsider, &rule_body(gh.grower_id)).await, 404, rules_path()).await;
    // Nothing changed on the way.
    let a = get_alert(&app, &gh.owner, &id).await;
    assert_eq!(a["status"], "active", "{a}");
    let rules = json_of(get_authed(&app, rules_path(), &gh.owner.access).await, 200).await;
    assert_eq!(rules["meta"]["total"], 1);
    assert_eq!(rules["data"][0]["enabled"], true);

    // Their own lists hold only their grower's alerts and rules.
    let mine = list_alerts(&app, outsider, "").await;
    assert_eq!(mine["meta"]["total"], 1, "{mine}");
    assert_eq!(mine["data"][0]["id"], their_alert);
    let mine = json_of(get_authed(&app, rules_path(), &outsider.access).await, 200).await;
    assert_eq!(mine["meta"]["total"], 1, "{mine}");
    assert_eq!(mine["data"][0]["growerId"], other.grower_id.to_string());
    // ADMIN sees both.
    assert_eq!(list_alerts(&app, &gh.admin, "").await["meta"]["total"], 2);
    assert_eq!(get_alert(&app, &gh.admin, &id).await["id"], id);

    // Customers and vendors have no greenhouse access at all: 403.
    let customer = register(&app, "customer").await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;
    for who in [&customer, &vendor] {
        assert_error(get_authed(&app, "/api/v1/alerts", &who.access).await, 403, "/api/v1/alerts").await;
        let q = format!("/api/v1/alerts?growerId={}", gh.grower_id);
        assert_error(get_authed(&app, &q, &who.access).await, 403, "/api/v1/alerts").await;
        assert_error(get_authed(&app, &path, &who.access).await, 403, &path).await;
        assert_error(alert_action(&app, who, &id, "ack").await, 403, &format!("{path}/ack")).await;
        assert_error(get_authed(&app, rules_path(), &who.access).await, 403, rules_path()).await;
        assert_error(post_rule(&app, who, &rule_body(gh.grower_id)).await, 403, rules_path()).await;
        let res = authed(&app, Method::DELETE, &rp, &who.access).send().await.unwrap();
        assert_error(res, 403, &rp).await;
    }
    assert_eq!(get_alert(&app, &gh.owner, &id).await["status"], "active");

    // A MEMBER (not owner) of the grower may read and acknowledge.
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.owner, gh.grower_id, member.id, "MEMBER").await, 201).await;
    assert_eq!(get_alert(&app, &member, &id).await["id"], id);
    let acked = json_of(alert_action(&app, &member, &id, "ack").await, 200).await;
    assert_eq!(acked["status"], "acknowledged");
    // ...but still not another grower's.
    let p = alert_path(&their_alert);
    assert_error(alert_action(&app, &member, &their_alert, "ack").await, 404, &format!("{p}/ack")).await;
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rule_validation_names_each_bad_field() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let other = greenhouse_by(&app, &gh.admin).await;
    let foreign = create_device(&app, &other.owner, other.grower_id, "foreign").await;
    let g = gh.grower_id;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "threshold": 1.0, "severity": "info"}),
            vec!["op"],
        ),
        (json!({"growerId": g, "metric": "temp", "kind": "rate", "severity": "info"}), vec!["op"]),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "severity": "info"}),
            vec!["threshold"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "outside", "severity": "info"}),
            vec!["low"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "outside", "low": 1.0, "severity": "info"}),
            vec!["low"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "outside", "low": 5.0, "high": 1.0,
                   "severity": "info"}),
            vec!["low"],
        ),
        (json!({"growerId": g, "metric": "temp", "kind": "stale", "severity": "info"}), vec!["forSeconds"]),
        (
            json!({"growerId": g, "metric": "temp", "kind": "stale", "forSeconds": 0, "severity": "info"}),
            vec!["forSeconds"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "forSeconds": -1,
                   "severity": "info"}),
            vec!["forSeconds"],
        ),
        (
            json!({"growerId": g, "metric": "Temp!", "kind": "threshold", "op": "gt", "threshold": 1.0, "severity": "info"}),
            vec!["metric"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "severity": "urgent"}),
            vec!["severity"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "alpha": 0.2,
                   "severity": "info"}),
            vec!["alpha"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0,
                   "warmupSamples": 10, "severity": "info"}),
            vec!["warmupSamples"],
        ),
        (json!({"growerId": g, "metric": "temp", "kind": "anomaly", "alpha": 1.5, "severity": "info"}), vec!["alpha"]),
        (json!({"growerId": g, "metric": "temp", "kind": "anomaly", "alpha": 0.0, "severity": "info"}), vec!["alpha"]),
        (
            json!({"growerId": g, "metric": "temp", "kind": "anomaly", "threshold": 0.0, "severity": "info"}),
            vec!["threshold"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "anomaly", "warmupSamples": 1, "severity": "info"}),
            vec!["warmupSamples"],
        ),
        (
            json!({"growerId": g, "name": "  ", "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0,
                   "severity": "info"}),
            vec!["name"],
        ),
        (
            json!({"growerId": g, "deviceId": foreign.id, "metric": "temp", "kind": "threshold", "op": "gt",
                   "threshold": 1.0, "severity": "info"}),
            vec!["deviceId"],
        ),
        // Every problem is named, not just the first.
        (
            json!({"growerId": g, "metric": "BAD", "kind": "threshold", "severity": "loud"}),
            vec!["metric", "severity", "op"],
        ),
    ];
    for (body, fields) in cases {
        let err = assert_error(post_rule(&app, &gh.owner, &body).await, 400, rules_path()).await;
        let mut got = detail_fields(&err);
        got.sort();
        let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "for {body}: {err}");
    }
    let none = json_of(get_authed(&app, &format!("{}?growerId={g}", rules_path()), &gh.owner.access).await, 200).await;
    assert_eq!(none["meta"]["total"], 0, "nothing was stored: {none}");

    // A PATCH is validated as a whole: removing the op of a threshold rule names `op`.
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "severity": "info"}),
    )
    .await;
    let rp = rule_path(&rule["id"]);
    let err = assert_error(patch_rule(&app, &gh.owner, &rule["id"], json!({"op": null})).await, 400, &rp).await;
    assert_eq!(detail_fields(&err), ["op"]);
    let err = assert_error(patch_rule(&app, &gh.owner, &rule["id"], json!({"alpha": 0.3})).await, 400, &rp).await;
    assert_eq!(detail_fields(&err), ["alpha"]);
    let res = patch_rule(&app, &gh.owner, &rule["id"], json!({"deviceId": foreign.id})).await;
    assert_eq!(detail_fields(&assert_error(res, 400, &rp).await), ["deviceId"]);
}

#[tokio::test]
async fn rule_crud_lists_and_delete_resolves_open_alerts() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let other = greenhouse_by(&app, &gh.admin).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.owner, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "one").await;
    let dev2 = create_device(&app, &gh.owner, gh.grower_id, "two").await;
    let g = gh.grower_id;

    // A member may create rules; defaults are filled in.
    let rule = new_rule(
        &app,
        &member,
        json!({"growerId": g, "deviceId": dev.id, "name": " Hot ", "metric": "temp", "kind": "threshold", "op": "gt",
               "threshold": 30.0, "severity": "warning"}),
    )
    .await;
    assert!(rule["id"].is_string());
    assert_eq!(rule["growerId"], g.to_string());
    assert_eq!(rule["deviceId"], dev.id.to_string());
    assert_eq!(rule["name"], "Hot");
    assert_eq!(rule["kind"], "threshold");
    assert_eq!(rule["op"], "gt");
    assert_eq!(rule["threshold"], 30.0);
    assert_eq!(rule["forSeconds"], 0);
    assert_eq!(rule["enabled"], true);
    assert_eq!(rule["autoResolve"], true);
    assert!(audit_rows(&app, "alert_rule.create").await.iter().any(|r| r.user_id == Some(member.id)));
    let all_devices = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "metric": "humidity", "kind": "threshold", "op": "lt", "threshold": 10.0, "severity": "info"}),
    )
    .await;
    let only_dev2 = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "deviceId": dev2.id, "metric": "temp", "kind": "stale", "forSeconds": 600, "severity": "info"}),
    )
    .await;
    let elsewhere = new_rule(
        &app,
        &other.owner,
        json!({"growerId": other.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0,
               "severity": "info"}),
    )
    .await;

    // Lists: by grower (oldest first), and by device (its rules and the grower-wide ones).
    let ids = |page: &Value| page["data"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    let mine = list_rules(&app, &gh.admin, &format!("{}?growerId={g}", rules_path())).await;
    assert_eq!(mine["meta"]["total"], 3, "{mine}");
    assert_eq!(ids(&mine), [rule["id"].clone(), all_devices["id"].clone(), only_dev2["id"].clone()]);
    let theirs = list_rules(&app, &gh.admin, &format!("{}?growerId={}", rules_path(), other.grower_id)).await;
    assert_eq!(ids(&theirs), [elsewhere["id"].clone()]);
    let for_dev = list_rules(&app, &member, &format!("{}?growerId={g}&deviceId={}", rules_path(), dev.id)).await;
    assert_eq!(ids(&for_dev), [rule["id"].clone(), all_devices["id"].clone()]);
    let every = list_rules(&app, &gh.admin, rules_path()).await;
    assert_eq!(every["meta"]["total"], 4, "ADMIN without a filter sees every grower's: {every}");

    // An open alert; deleting the rule resolves it.
    let mut rx = watch(&app, g);
    let t0 = base();
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, t0)]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let open = list[0]["id"].clone();
    let rp = rule_path(&rule["id"]);
    let res = authed(&app, Method::DELETE, &rp, &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let a = get_alert(&app, &gh.owner, &open).await;
    assert_eq!(a["status"], "resolved", "deleting resolves the open alert: {a}");
    assert_eq!(a["resolvedBy"], gh.owner.id.to_string());
    app.run_jobs().await;
    assert_eq!(changes(&alert_events(&mut rx, g)), ["created", "resolved"]);
    assert!(audit_rows(&app, "alert_rule.delete").await.iter().any(|r| r.user_id == Some(gh.owner.id)));

    // Gone: 404 for DELETE and PATCH, absent from the list, and it evaluates nothing.
    let res = authed(&app, Method::DELETE, &rp, &gh.owner.access).send().await.unwrap();
    assert_error(res, 404, &rp).await;
    assert_error(patch_rule(&app, &gh.owner, &rule["id"], json!({"enabled": true})).await, 404, &rp).await;
    let mine = list_rules(&app, &gh.admin, &format!("{}?growerId={g}", rules_path())).await;
    assert_eq!(ids(&mine), [all_devices["id"].clone(), only_dev2["id"].clone()]);
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 50.0, t0 + Duration::seconds(1))]).await;
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&status=active")).await["meta"]["total"], 0);
    assert!(alert_events(&mut rx, g).is_empty());
}

#[tokio::test]
async fn rule_patch_is_stored_and_disabling_resolves_the_open_alert() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.owner, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "one").await;
    let g = gh.grower_id;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "name": "Hot", "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "warning"}),
    )
    .await;
    let stored = |page: Value| page["data"][0].clone();
    let rules_of_g = format!("{}?growerId={g}", rules_path());

    // PATCH changes what is given, and the change is stored (not only echoed).
    let patched =
        json_of(patch_rule(&app, &member, &rule["id"], json!({"threshold": 25.0, "severity": "critical"})).await, 200)
            .await;
    assert_eq!(patched["threshold"], 25.0);
    assert_eq!(patched["severity"], "critical");
    assert_eq!(patched["name"], "Hot", "absent fields stay");
    assert_eq!(patched["op"], "gt");
    let now = stored(list_rules(&app, &gh.owner, &rules_of_g).await);
    assert_eq!(now["threshold"], 25.0, "the PATCH was stored: {now}");
    assert_eq!(now["severity"], "critical", "the PATCH was stored: {now}");
    assert_eq!(now["name"], "Hot");

    // The rule evaluates as patched: 26 is above 25 (not above 30), at the new severity.
    let mut rx = watch(&app, g);
    let t0 = base();
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 26.0, t0)]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "the patched threshold applies: {list:?}");
    assert_eq!(list[0]["severity"], "critical");
    let first = list[0]["id"].clone();

    // Disabling resolves the open alert, and is stored: the rule no longer evaluates.
    let off = json_of(patch_rule(&app, &member, &rule["id"], json!({"enabled": false})).await, 200).await;
    assert_eq!(off["enabled"], false);
    let a = get_alert(&app, &gh.owner, &first).await;
    assert_eq!(a["status"], "resolved", "disabling resolves the open alert: {a}");
    assert_eq!(a["resolvedBy"], member.id.to_string());
    app.run_jobs().await;
    assert_eq!(changes(&alert_events(&mut rx, g)), ["created", "resolved"]);
    assert_eq!(stored(list_rules(&app, &gh.owner, &rules_of_g).await)["enabled"], false, "disabled is stored");
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 40.0, t0 + Duration::seconds(1))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "a disabled rule opens no alert: {list:?}");
    assert!(alert_events(&mut rx, g).is_empty());

    // Enabled again, it fires again: a new alert.
    json_of(patch_rule(&app, &gh.owner, &rule["id"], json!({"enabled": true})).await, 200).await;
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 41.0, t0 + Duration::seconds(2))]).await;
    let active = list_alerts(&app, &gh.owner, &format!("growerId={g}&status=active")).await;
    assert_eq!(active["meta"]["total"], 1, "{active}");
    assert_ne!(active["data"][0]["id"], first);
    assert_eq!(active["data"][0]["value"], 41.0);
    assert!(audit_rows(&app, "alert_rule.update").await.iter().any(|r| r.user_id == Some(member.id)));
}

#[tokio::test]
async fn batches_nothing_watches_enqueue_no_evaluation() {
    let app = app().await;
    let watched = greenhouse(&app).await;
    let quiet = greenhouse_by(&app, &watched.admin).await;
    let watched_dev = create_device(&app, &watched.owner, watched.grower_id, "watched").await;
    let quiet_dev = create_device(&app, &quiet.owner, quiet.grower_id, "quiet").await;
    new_rule(
        &app,
        &watched.owner,
        json!({"growerId": watched.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "info"}),
    )
    .await;
    // Whatever setup queued (mail), drained or not, is the baseline.
    app.run_jobs().await;
    let t0 = base();

    // A grower without rules: no job.
    let (evaluations, all) = queued_jobs(&app).await;
    assert_eq!(evaluations, 0);
    let batch = json!([reading(quiet_dev.id, "temp", 99.0, t0), reading(quiet_dev.id, "humidity", 1.0, t0)]);
    assert_eq!(post_batch(&app, &bearer(&quiet.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&app).await, (0, all), "a batch no rule watches enqueues nothing");

    // A metric no rule of the grower watches: no job either.
    let batch = json!([reading(watched_dev.id, "humidity", 99.0, t0)]);
    assert_eq!(post_batch(&app, &bearer(&watched.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&app).await, (0, all));

    // A watched reading: exactly one evaluation job.
    let batch = json!([reading(watched_dev.id, "temp", 20.0, t0), reading(watched_dev.id, "humidity", 1.0, t0)]);
    assert_eq!(post_batch(&app, &bearer(&watched.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&app).await, (1, all + 1));
    app.run_jobs().await;
    assert_eq!(queued_jobs(&app).await.0, 0);
    assert!(alerts_of(&app, &watched).await.is_empty());
    assert!(alerts_of(&app, &quiet).await.is_empty());
}

#[tokio::test]
async fn one_evaluation_run_takes_on_the_queued_evaluations_of_every_grower() {
    use mash::jobs::BackgroundJob;
    let app = app().await;
    let a = greenhouse(&app).await;
    let b = greenhouse_by(&app, &a.admin).await;
    let dev_a = create_device(&app, &a.owner, a.grower_id, "a").await;
    let dev_b = create_device(&app, &b.owner, b.grower_id, "b").await;
    for gh in [&a, &b] {
        new_rule(
            &app,
            &gh.owner,
            json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
                   "severity": "info"}),
        )
        .await;
    }
    app.run_jobs().await;
    let mut events_a = watch(&app, a.grower_id);
    let mut events_b = watch(&app, b.grower_id);
    let t0 = base();
    // Three batches, three evaluation jobs: two of grower A's device (overlapping by one
    // reading), one of grower B's.
    for (who, batch) in [
        (&a, json!([reading(dev_a.id, "temp", 31.0, t0), reading(dev_a.id, "temp", 32.0, t0 + Duration::seconds(1))])),
        (
            &a,
            json!([
                reading(dev_a.id, "temp", 32.0, t0 + Duration::seconds(1)),
                reading(dev_a.id, "temp", 35.0, t0 + Duration::seconds(2))
            ]),
        ),
        (&b, json!([reading(dev_b.id, "temp", 40.0, t0)])),
    ] {
        assert_eq!(post_batch(&app, &bearer(&who.owner), &batch).await.status(), 202);
    }
    // And one whose arguments do not parse: it is not taken, and fails on its own.
    let now = Utc::now();
    let bogus = Uuid::now_v7();
    job::Entity::insert(job::ActiveModel {
        id: sea_orm::Set(bogus),
        job_type: sea_orm::Set("evaluate_readings".into()),
        payload: sea_orm::Set(json!({"bogus": true})),
        priority: sea_orm::Set(0),
        status: sea_orm::Set(job::QUEUED.into()),
        attempts: sea_orm::Set(0),
        max_attempts: sea_orm::Set(1),
        run_at: sea_orm::Set(now),
        locked_until: sea_orm::Set(None),
        locked_by: sea_orm::Set(None),
        last_error: sea_orm::Set(None),
        created_at: sea_orm::Set(now),
        updated_at: sea_orm::Set(now),
    })
    .exec(&app.state.db)
    .await
    .unwrap();
    let queued = || async {
        job::Entity::find()
            .filter(job::Column::JobType.eq("evaluate_readings"))
            .filter(job::Column::Status.eq(job::QUEUED))
            .all(&app.state.db)
            .await
            .unwrap()
    };
    assert_eq!(queued().await.len(), 4);

    // One job is run by hand: it takes the other two valid ones with it.
    let first = queued().await.into_iter().find(|j| j.id != bogus).unwrap();
    let args: mash::alerts::evaluate::EvaluateReadings = serde_json::from_value(first.payload.clone()).unwrap();
    job::Entity::delete_by_id(first.id).exec(&app.state.db).await.unwrap();
    args.run(&app.state, mash::jobs::Run { id: first.id, attempt: 1 }).await.expect("the evaluation runs");
    let left: Vec<Uuid> = queued().await.into_iter().map(|j| j.id).collect();
    assert_eq!(left, vec![bogus], "the valid evaluations were done and removed in that run");

    let alerts_a = alerts_of(&app, &a).await;
    assert_eq!(alerts_a.len(), 1, "{alerts_a:?}");
    assert_eq!(alerts_a[0]["count"], 3, "three distinct breaching readings, the shared one counted once");
    assert_eq!(alerts_a[0]["value"], 35.0);
    let alerts_b = alerts_of(&app, &b).await;
    assert_eq!(alerts_b.len(), 1, "{alerts_b:?}");
    assert_eq!(alerts_b[0]["value"], 40.0);
    // Each grower's change is announced on its own path, after the publishing jobs run.
    app.run_jobs().await;
    assert_eq!(changes(&alert_events(&mut events_a, a.grower_id)), vec!["created"]);
    assert_eq!(changes(&alert_events(&mut events_b, b.grower_id)), vec!["created"]);
    let dead = job::Entity::find_by_id(bogus).one(&app.state.db).await.unwrap().expect("kept as a dead letter");
    assert_eq!(dead.status, job::DEAD);
}

#[tokio::test]
async fn a_run_leaves_evaluations_claimed_by_a_worker_to_that_worker() {
    use mash::jobs::BackgroundJob;
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "info"}),
    )
    .await;
    app.run_jobs().await;
    let t0 = base();
    for (i, v) in [31.0, 32.0].into_iter().enumerate() {
        let batch = json!([reading(dev.id, "temp", v, t0 + Duration::seconds(i as i64))]);
        assert_eq!(post_batch(&app, &bearer(&gh.owner), &batch).await.status(), 202);
    }
    // A worker claims both (as its loop would, before running them).
    let worker = app.state.jobs.worker_id.clone();
    let lease = std::time::Duration::from_secs(60);
    let claimed =
        mash::jobs::queue::claim(&app.state.db, &["evaluate_readings"], &worker, Utc::now(), lease, 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let args = |j: &job::Model| -> mash::alerts::evaluate::EvaluateReadings {
        serde_json::from_value(j.payload.clone()).unwrap()
    };
    let run = |j: &job::Model| mash::jobs::Run { id: j.id, attempt: j.attempts };
    // The first runs, as the worker runs it: the claimed second is not taken from its worker.
    args(&claimed[0]).run(&app.state, run(&claimed[0])).await.unwrap();
    let second = job::Entity::find_by_id(claimed[1].id).one(&app.state.db).await.unwrap();
    assert_eq!(second.expect("a claimed job is its worker's").status, job::RUNNING);
    let alerts = alerts_of(&app, &gh).await;
    assert_eq!(alerts[0]["count"], 1, "{alerts:?}");
    // Its own run then evaluates its reading.
    args(&claimed[1]).run(&app.state, run(&claimed[1])).await.unwrap();
    let alerts = alerts_of(&app, &gh).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["count"], 2, "{alerts:?}");
    assert_eq!(alerts[0]["value"], 32.0);
}

#[tokio::test]
async fn a_rule_created_on_one_instance_is_watched_at_once_by_another_through_redis() {
    let (a, b, _dir) = crate::helpers::two_instances_on_redis(NO_WORKERS).await;
    let gh = greenhouse(&a).await;
    let dev = create_device(&a, &gh.owner, gh.grower_id, "sensor").await;
    // Instance b learns (and caches) that nothing watches this grower.
    send(&b, &gh.owner, vec![reading(dev.id, "temp", 10.0, base())]).await;
    assert_eq!(queued_jobs(&b).await.0, 0);
    new_rule(
        &a,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0, "severity": "warning"}),
    )
    .await;
    // The change reaches b through Redis (asynchronously: a few tries, each a new batch).
    let mut watched = false;
    for i in 1..=50 {
        let batch = json!([reading(dev.id, "temp", 40.0, base() + Duration::seconds(i))]);
        assert_eq!(post_batch(&b, &bearer(&gh.owner), &batch).await.status(), 202);
        if queued_jobs(&b).await.0 > 0 {
            watched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(watched, "instance b never evaluated the rule created on a");
    b.run_jobs().await;
    let open = alerts_of(&b, &gh).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["status"], "active");
}

// ---------------------------------------------------------------------------------------------
// Evaluation with the workers running, on both databases through the job queue; an evaluation
// queued with its batch survives a restart
// ---------------------------------------------------------------------------------------------

/// Polls `GET /alerts` until `done` holds for the grower's alerts (10 s at most). (The page and
/// its `meta.total` are two reads, which a worker's write may fall between: only the page counts.)
async fn alerts_until(app: &TestApp, gh: &Greenhouse, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..200 {
        let page = list_alerts(app, &gh.owner, &format!("growerId={}&limit=100", gh.grower_id)).await;
        last = page["data"].as_array().expect("a page of alerts").clone();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("alerts never reached {what}: {last:?}");
}

/// Waits until every evaluation job has run and left the queue (finished jobs are removed in
/// batches after their run, so an alert can show before its job is gone).
async fn queue_drained(app: &TestApp) {
    for _ in 0..200 {
        if queued_jobs(app).await.0 == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("evaluations left in the queue: {:?}", queued_jobs(app).await);
}

/// Posts one batch (202 asserted).
async fn post_watched(app: &TestApp, gh: &Greenhouse, items: Vec<Value>) {
    let res = post_batch(app, &bearer(&gh.owner), &Value::Array(items)).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
}

#[tokio::test]
async fn with_workers_running_an_alert_opens_repeats_and_resolves_on_its_own() {
    let app = spawn_app_with(&[], axum::Router::new()).await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let other = create_device(&app, &gh.owner, gh.grower_id, "not watched").await;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "deviceId": dev.id, "metric": "temp", "kind": "threshold", "op": "gt",
               "threshold": 50.0, "severity": "warning"}),
    )
    .await;
    let mut rx = watch(&app, gh.grower_id);
    let t = base();
    // Only the watched (device, metric) counts: the same values elsewhere open nothing.
    post_watched(&app, &gh, vec![reading(dev.id, "temp", 70.0, t), reading(other.id, "temp", 90.0, t)]).await;
    post_watched(&app, &gh, vec![reading(dev.id, "humidity", 90.0, t)]).await;
    let open = alerts_until(&app, &gh, "one open alert", |a| a.len() == 1).await;
    assert_eq!(open[0]["ruleId"], rule["id"]);
    assert_eq!(open[0]["deviceId"], dev.id.to_string());
    assert_eq!((open[0]["status"].as_str(), open[0]["value"].as_f64()), (Some("active"), Some(70.0)));
    // A repeat updates it; one resent, already evaluated, is not counted again.
    post_watched(&app, &gh, vec![reading(dev.id, "temp", 80.0, t + Duration::seconds(1))]).await;
    post_watched(&app, &gh, vec![reading(dev.id, "temp", 70.0, t)]).await;
    alerts_until(&app, &gh, "count 2", |a| a.len() == 1 && a[0]["count"] == 2).await;
    post_watched(&app, &gh, vec![reading(dev.id, "temp", 10.0, t + Duration::seconds(2))]).await;
    let done = alerts_until(&app, &gh, "resolved", |a| a.len() == 1 && a[0]["status"] == "resolved").await;
    assert_eq!(done[0]["count"], 2, "{done:?}");
    // The events are published by delivery jobs after the change commits: wait for the last.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend(alert_events(&mut rx, gh.grower_id));
        if changes(&seen).last() == Some(&"resolved") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = changes(&seen).join(",");
    assert!(seen.starts_with("created,") && seen.ends_with(",resolved"), "events: {seen}");
    // Every evaluation ran and left the queue.
    queue_drained(&app).await;
}

#[tokio::test]
async fn an_evaluation_queued_with_its_batch_runs_after_a_restart() {
    // A batch and its evaluation job commit together: a process that stops before running the
    // job (here: one without workers) leaves it queued, and the next start with workers runs it.
    let a = app().await;
    let gh = greenhouse(&a).await;
    let dev = create_device(&a, &gh.owner, gh.grower_id, "sensor").await;
    let other = create_device(&a, &gh.owner, gh.grower_id, "sensor 2").await;
    let before = a.state.clock.now() - Duration::minutes(10);
    // A batch nothing watches queues nothing.
    send(&a, &gh.owner, vec![reading(other.id, "temp", 99.0, before)]).await;
    assert_eq!(queued_jobs(&a).await.0, 0, "an unwatched batch queues no evaluation");
    new_rule(
        &a,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 50.0,
               "severity": "warning"}),
    )
    .await;
    let t = a.state.clock.now();
    let batch = json!([reading(dev.id, "temp", 70.0, t), reading(dev.id, "temp", 75.0, t + Duration::seconds(1))]);
    assert_eq!(post_batch(&a, &bearer(&gh.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&a).await.0, 1, "the batch queued its evaluation with it");

    // A restart: another process on the same database, with workers (stopped again before `a`
    // writes more, so its workers do not run what `a` queues).
    let restart = || a.spawn_sibling(&[]);
    let mut b = restart().await;
    let open = alerts_until(&b, &gh, "the queued readings evaluated", |x| x.len() == 1 && x[0]["count"] == 2).await;
    assert_eq!(
        (open[0]["deviceId"].as_str(), open[0]["value"].as_f64()),
        (Some(dev.id.to_string().as_str()), Some(75.0))
    );
    queue_drained(&b).await;
    b.begin_shutdown().await.unwrap().unwrap();

    // Again: one reading newer than the last evaluated (counted), one older (not evaluated: the
    // series is evaluated in time order), and nothing counted twice by a second start.
    let batch = json!([
        reading(dev.id, "temp", 60.0, t - Duration::seconds(5)),
        reading(dev.id, "temp", 90.0, t + Duration::seconds(2))
    ]);
    assert_eq!(post_batch(&a, &bearer(&gh.owner), &batch).await.status(), 202);
    assert_eq!(queued_jobs(&a).await.0, 1);
    let mut c = restart().await;
    let open = alerts_until(&c, &gh, "count 3", |x| x.len() == 1 && x[0]["count"] == 3).await;
    assert_eq!(open[0]["value"], 90.0, "{open:?}");
    queue_drained(&c).await;
    c.begin_shutdown().await.unwrap().unwrap();
    let d = restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let open = alerts_of(&d, &gh).await;
    assert_eq!((open.len(), &open[0]["count"]), (1, &json!(3)), "{open:?}");
}
