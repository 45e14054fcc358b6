//! Evaluation with the workers running, on both databases through the job queue: an alert
//! opens, repeats and resolves on its own, and an evaluation queued with its batch runs after
//! a restart.

use chrono::Duration;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp,
    alerts::{alerts_of, list_alerts, new_rule},
    greenhouse::{Greenhouse, bearer, create_device, greenhouse, post_batch, reading},
    spawn_app_with,
};

use super::{alert_events, app, base, changes, queued_jobs, send, watch};

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
