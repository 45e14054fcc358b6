//! Enqueueing inside a transaction, retries with backoff, dead letters (also at once, for
//! arguments or an address that do not parse) and an admin's retry.

use std::collections::HashSet;

use mash::jobs::{
    self,
    entity::{self as job_row, DEAD, QUEUED},
};
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{
    accounts::{admin, assert_audited, authed, get_authed, json_of},
    assert_error, quiet_app, ts_of,
};

use super::{
    JOBS, assert_close, clear_queue, closed_port, deliveries_to, insert_unparseable_mail, job, job_count, mail,
};

// ---------------------------------------------------------------------------------------------
// Transactional enqueue
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists_and_a_committed_one_runs() {
    let app = quiet_app(&[]).await;
    let db = &app.state.db;

    let txn = db.begin_write().await.unwrap();
    let dropped = jobs::enqueue(&txn, &mail("rolled-back@example.com")).await.unwrap();
    // Inside the transaction the job is there ...
    assert!(job_row::Entity::find_by_id(dropped).one(&txn).await.unwrap().is_some());
    txn.rollback().await.unwrap();
    // ... and with the rollback it is gone.
    assert!(job(&app, dropped).await.is_none(), "a rolled-back enqueue left a job");
    assert_eq!(job_count(&app).await, 0);

    let txn = db.begin_write().await.unwrap();
    let kept = jobs::enqueue(&txn, &mail("committed@example.com")).await.unwrap();
    // Not visible to anyone else (a worker) before the commit.
    assert!(job(&app, kept).await.is_none(), "an uncommitted job is visible outside its transaction");
    txn.commit().await.unwrap();

    let row = job(&app, kept).await.expect("the committed job");
    assert_eq!(row.job_type, "send_email");
    assert_eq!(row.status, QUEUED);
    assert_eq!(row.attempts, 0);
    assert_eq!(row.max_attempts, 10);
    assert_eq!(row.payload["to"], "committed@example.com", "{}", row.payload);
    assert!(row.locked_by.is_none() && row.locked_until.is_none() && row.last_error.is_none(), "{row:?}");
    assert!(row.run_at <= app.state.clock.now(), "enqueue runs now: {row:?}");

    // Only the committed mail is ever sent (logged, without SMTP), and it leaves the queue.
    assert_eq!(app.run_jobs().await, 1);
    assert!(job(&app, kept).await.is_none(), "a finished job stays queued");
    assert!(deliveries_to(&app, "rolled-back@example.com").await.is_empty());
    let sent = deliveries_to(&app, "committed@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].channel.as_str(), sent[0].status.as_str(), sent[0].attempt), ("email", "logged", 1));
}

// ---------------------------------------------------------------------------------------------
// Retries, dead letters, retry by an operator
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_dead_lettered_and_an_admin_can_retry_it() {
    let smtp = format!("smtp://127.0.0.1:{}", closed_port());
    let app = quiet_app(&[("SMTP_URL", smtp.as_str())]).await;
    let admin = admin(&app).await;
    clear_queue(&app).await;
    let to = "unreachable@example.com";
    let id = jobs::enqueue(&app.state.db, &mail(to)).await.unwrap();

    // First attempt: the SMTP server is down, so the job goes back on the queue for later.
    assert_eq!(app.run_jobs().await, 1);
    assert_eq!(app.run_jobs().await, 0, "a failed job ran again before its backoff");
    let row = job(&app, id).await.expect("a failed job is kept");
    assert_eq!(row.status, QUEUED, "{row:?}");
    assert_eq!(row.attempts, 1, "{row:?}");
    assert!(row.last_error.as_deref().is_some_and(|e| !e.is_empty()), "{row:?}");
    assert!(row.run_at > app.state.clock.now(), "the retry is not in the future: {row:?}");
    assert!(row.locked_by.is_none() && row.locked_until.is_none(), "the lease was not released: {row:?}");

    // Attempts 2..=10, each after the clock moves past the backoff.
    for attempt in 2..=10 {
        let before = job(&app, id).await.unwrap();
        // The delay before this attempt: 2^(attempts so far) s, ±50%.
        let delay = (before.run_at - before.updated_at).num_milliseconds() as f64 / 1000.0;
        let base = 2f64.powi(before.attempts).min(3600.0);
        assert!(
            delay >= base * 0.5 - 0.001 && delay <= base * 1.5 + 0.001,
            "attempt {attempt}: backoff {delay} s outside {base} s ±50%"
        );
        app.state.clock.advance(chrono::Duration::hours(2));
        assert_eq!(app.run_jobs().await, 1, "attempt {attempt}");
        let row = job(&app, id).await.expect("a failing job is kept");
        assert_eq!(row.attempts, attempt, "{row:?}");
        let want = if attempt < 10 { QUEUED } else { DEAD };
        assert_eq!(row.status, want, "after attempt {attempt}: {row:?}");
    }
    let dead = job(&app, id).await.unwrap();
    let last_error = dead.last_error.clone().expect("a dead job keeps its last error");
    assert!(!last_error.is_empty());
    assert!(dead.locked_by.is_none() && dead.locked_until.is_none(), "{dead:?}");

    // A dead job is never run again, however late it gets.
    app.state.clock.advance(chrono::Duration::days(1));
    assert_eq!(app.run_jobs().await, 0, "a dead job ran");
    assert_eq!(job(&app, id).await.unwrap().status, DEAD);

    // Each attempt was recorded as a failed email delivery.
    let attempts = deliveries_to(&app, to).await;
    assert_eq!(attempts.len(), 10, "{attempts:?}");
    assert!(attempts.iter().all(|d| d.channel == "email" && d.status == "failed" && d.error.is_some()), "{attempts:?}");
    let numbers: HashSet<i32> = attempts.iter().map(|d| d.attempt).collect();
    assert_eq!(numbers, (1..=10).collect::<HashSet<i32>>());

    // The operator sees it among the dead letters, with its error.
    let body = json_of(get_authed(&app, JOBS, &admin.access).await, 200).await;
    assert_eq!(body["dead"], 1, "{body}");
    assert_eq!(body["depth"], 0, "{body}");
    assert_eq!(body["running"], 0, "{body}");
    assert_eq!(body["recentDead"].as_array().map(Vec::len), Some(1), "{body}");
    let d = &body["recentDead"][0];
    assert_eq!(d["id"], id.to_string(), "{body}");
    assert_eq!(d["jobType"], "send_email", "{body}");
    assert_eq!(d["attempts"], 10, "{body}");
    assert_eq!(d["lastError"], last_error.as_str(), "{body}");
    assert_close(ts_of(&d["createdAt"]), dead.created_at);
    assert_close(ts_of(&d["failedAt"]), dead.updated_at);
    let send_email = body["byType"].as_array().unwrap().iter().find(|t| t["jobType"] == "send_email").cloned();
    assert_eq!(send_email, Some(json!({"jobType": "send_email", "queued": 0, "running": 0, "failed": 0, "dead": 1})));

    // A retry puts it back with a fresh set of attempts, due now; audited.
    let path = format!("{JOBS}/{id}/retry");
    let res = authed(&app, Method::POST, &path, &admin.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let back = job(&app, id).await.expect("the retried job");
    assert_eq!(back.status, QUEUED, "{back:?}");
    assert_eq!(back.attempts, 0, "{back:?}");
    assert!(back.run_at <= app.state.clock.now(), "a retried job is due now: {back:?}");
    let audited = assert_audited(&app, "job.retry", admin.id).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].resource_type.as_deref(), Some("job"));
    assert_eq!(audited[0].resource_id.as_deref(), Some(id.to_string().as_str()));
    let body = json_of(get_authed(&app, JOBS, &admin.access).await, 200).await;
    assert_eq!((body["dead"].as_i64(), body["depth"].as_i64()), (Some(0), Some(1)), "{body}");
    assert_eq!(body["recentDead"], json!([]), "{body}");

    // It is no longer dead: a second retry finds nothing.
    let res = authed(&app, Method::POST, &path, &admin.access).send().await.unwrap();
    assert_error(res, 404, &path).await;

    // It runs again, and one more failure is a retry (attempt 1 of 10), not a dead letter.
    assert_eq!(app.run_jobs().await, 1);
    let again = job(&app, id).await.unwrap();
    assert_eq!((again.status.as_str(), again.attempts), (QUEUED, 1), "{again:?}");
}

#[tokio::test]
async fn a_job_whose_arguments_do_not_parse_is_dead_lettered_at_once() {
    let app = quiet_app(&[]).await;
    let id = insert_unparseable_mail(&app).await;
    assert_eq!(app.run_jobs().await, 1);
    let row = job(&app, id).await.expect("kept as a dead letter");
    assert_eq!(row.status, DEAD, "{row:?}");
    assert_eq!(row.attempts, 1, "a permanent error is not retried: {row:?}");
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("send_email") && error.contains("do not parse"), "{error}");
    app.state.clock.advance(chrono::Duration::days(1));
    assert_eq!(app.run_jobs().await, 0);
}

#[tokio::test]
async fn a_mail_to_an_address_that_does_not_parse_is_dead_lettered_without_retries() {
    let smtp = format!("smtp://127.0.0.1:{}", closed_port());
    let app = quiet_app(&[("SMTP_URL", smtp.as_str())]).await;
    let id = jobs::enqueue(&app.state.db, &mail("not an address")).await.unwrap();
    assert_eq!(app.run_jobs().await, 1);
    let row = job(&app, id).await.expect("kept as a dead letter");
    assert_eq!((row.status.as_str(), row.attempts), (DEAD, 1), "{row:?}");
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("recipient")), "{row:?}");
}
