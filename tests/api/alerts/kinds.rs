//! The rule kinds other than anomaly: threshold (also held for some seconds), outside and lt
//! with their bounds, rate of change per minute across batches, and stale.

use chrono::{Duration, Utc};
use mash::alerts::evaluate::CheckStale;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{authed, get_authed, json_of},
    alerts::{alerts_of, new_rule},
    greenhouse::{bearer, create_device, greenhouse, post_batch, reading},
    spawn_app_with, ts_of,
};

use super::{alert_events, app, base, changes, get_alert, send, watch};

/// Runs one stale check now (by the app's clock).
async fn check_stale(app: &TestApp) {
    mash::jobs::enqueue(&app.state.db, &CheckStale::default()).await.unwrap();
    app.run_jobs().await;
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
