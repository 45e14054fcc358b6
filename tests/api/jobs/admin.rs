//! `GET /admin/jobs` and `POST /admin/jobs/{id}/retry` (admins only; counts by status and
//! type, the oldest due job, recent failures), and the job metrics.

use std::time::Duration;

use axum::Router;
use mash::{
    alerts::delivery::DeliverWebhook,
    jobs::{
        self,
        entity::{DEAD, RUNNING},
        queue,
    },
};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    accounts::{admin, authed, get_authed, json_of, user_with_role},
    assert_error, metrics_text, quiet_app, spawn_app_with, ts_of,
};

use super::{JOBS, assert_close, clear_queue, insert_unparseable_mail, job, mail};

// ---------------------------------------------------------------------------------------------
// GET /admin/jobs and POST /admin/jobs/{id}/retry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_jobs_needs_an_admin_and_counts_queued_running_failed_and_dead_jobs() {
    let app = quiet_app(&[]).await;
    let admin = admin(&app).await;
    let grower = user_with_role(&app, "grower", "GROWER").await;
    let customer = user_with_role(&app, "customer", "CUSTOMER").await;
    clear_queue(&app).await;

    // Who may look.
    assert_error(app.get(JOBS).await, 401, JOBS).await;
    for who in [&grower, &customer] {
        assert_error(get_authed(&app, JOBS, &who.access).await, 403, JOBS).await;
    }
    let empty = json_of(get_authed(&app, JOBS, &admin.access).await, 200).await;
    assert_eq!(
        empty,
        json!({"depth": 0, "running": 0, "failed": 0, "dead": 0, "oldestDueAt": null, "byType": [], "recentDead": []})
    );

    let db = &app.state.db;
    let names = app.state.jobs.registry.names();
    let in_an_hour = app.state.clock.now() + chrono::Duration::hours(1);
    // Two queued for later (one a webhook delivery) ...
    let later_mail = jobs::enqueue_at(db, &mail("later@example.com"), in_an_hour).await.unwrap();
    let hook = DeliverWebhook {
        grower_id: Uuid::now_v7(),
        alert_id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        body: "{}".into(),
    };
    jobs::enqueue_at(db, &hook, in_an_hour).await.unwrap();
    // ... one running (leased to another worker) ...
    let running = jobs::enqueue(db, &mail("running@example.com")).await.unwrap();
    let lease = Duration::from_secs(600);
    let claimed = queue::claim(db, &names, "other-worker", app.state.clock.now(), lease, 1).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![running]);
    // ... one dead (arguments that do not parse) ...
    let dead = insert_unparseable_mail(&app).await;
    assert_eq!(app.run_jobs().await, 1);
    assert_eq!(job(&app, dead).await.unwrap().status, DEAD);
    // ... one queued again after a failed attempt ...
    let retried = jobs::enqueue(db, &mail("retried@example.com")).await.unwrap();
    let claimed = queue::claim(db, &names, "flaky-worker", app.state.clock.now(), lease, 1).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![retried]);
    let outcome = queue::fail(db, &claimed[0], "smtp said no", false, app.state.clock.now()).await.unwrap();
    assert_eq!(outcome, queue::Failed::Retry);
    // ... and one overdue for ten minutes.
    let overdue_at = app.state.clock.now() - chrono::Duration::minutes(10);
    jobs::enqueue_at(db, &mail("overdue@example.com"), overdue_at).await.unwrap();

    let body = json_of(get_authed(&app, JOBS, &admin.access).await, 200).await;
    assert_eq!(body["depth"], 4, "{body}");
    assert_eq!(body["running"], 1, "{body}");
    assert_eq!(body["failed"], 1, "{body}");
    assert_eq!(body["dead"], 1, "{body}");
    assert_close(ts_of(&body["oldestDueAt"]), overdue_at);
    assert_eq!(
        body["byType"],
        json!([
            {"jobType": "deliver_webhook", "queued": 1, "running": 0, "failed": 0, "dead": 0},
            {"jobType": "send_email", "queued": 3, "running": 1, "failed": 1, "dead": 1},
        ]),
        "{body}"
    );
    let recent = body["recentDead"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{body}");
    assert_eq!(recent[0]["id"], dead.to_string());
    assert_eq!(recent[0]["jobType"], "send_email");
    assert_eq!(recent[0]["attempts"], 1);
    assert!(recent[0]["lastError"].as_str().is_some_and(|e| e.contains("do not parse")), "{body}");
    ts_of(&recent[0]["createdAt"]);
    ts_of(&recent[0]["failedAt"]);

    // Retry is for dead jobs only, by an admin.
    for not_dead in [later_mail, running, retried, Uuid::now_v7()] {
        let path = format!("{JOBS}/{not_dead}/retry");
        let res = authed(&app, Method::POST, &path, &admin.access).send().await.unwrap();
        assert_error(res, 404, &path).await;
    }
    let path = format!("{JOBS}/not-a-uuid/retry");
    assert_error(authed(&app, Method::POST, &path, &admin.access).send().await.unwrap(), 400, &path).await;
    let path = format!("{JOBS}/{dead}/retry");
    assert_error(app.client.post(app.url(&path)).send().await.unwrap(), 401, &path).await;
    assert_error(authed(&app, Method::POST, &path, &grower.access).send().await.unwrap(), 403, &path).await;
    assert_eq!(job(&app, dead).await.unwrap().status, DEAD, "a refused retry changed the job");
    assert_eq!(job(&app, running).await.unwrap().status, RUNNING);
    assert!(crate::helpers::accounts::audit_rows(&app, "job.retry").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// The value of the sample line that starts with `series ` (name and labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[tokio::test]
async fn job_runs_show_in_the_metrics() {
    let app = quiet_app(&[]).await;
    // Families without a sample yet are left out of the exposition; the queue depth is always there.
    assert!(metrics_text(&app).await.contains("# TYPE job_queue_depth gauge"));
    jobs::enqueue(&app.state.db, &mail("metrics@example.com")).await.unwrap();
    insert_unparseable_mail(&app).await;
    assert_eq!(app.run_jobs().await, 2);

    let text = metrics_text(&app).await;
    assert!(text.contains("# TYPE job_wait_seconds histogram"), "{text}");
    assert!(text.contains("# TYPE jobs_finished counter"), "{text}");
    assert_eq!(sample(&text, r#"job_wait_seconds_count{job="send_email"}"#), Some(2.0), "{text}");
    assert!(sample(&text, r#"job_duration_seconds_count{job="send_email"}"#) == Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"jobs_finished_total{job="send_email",outcome="success"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"jobs_finished_total{job="send_email",outcome="dead"}"#), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_running_worker_keeps_the_queue_gauges_current() {
    // Workers, the scheduler and the gauge task on: the worker dead-letters the bad job, and the
    // gauge task (every few seconds) reports it.
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "1")], Router::new()).await;
    let dead = insert_unparseable_mail(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let series = r#"jobs_dead{job="send_email"}"#;
    loop {
        let text = metrics_text(&app).await;
        if sample(&text, series) == Some(1.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{series} never reached 1:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(job(&app, dead).await.unwrap().status, DEAD);
}
