//! The job queue: transactional enqueue, retries and dead letters, lease recovery, exclusive claims,
//! schedules across instances, and `GET /admin/jobs`.
//!
//! Every app here runs with `JOB_CONCURRENCY=0` (no worker, no scheduler, no gauge task) unless
//! a test is about those: the test drives the queue itself with `run_jobs`, `claim` and `tick`,
//! and moves time with the app's clock.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use axum::Router;
use chrono::{DateTime, Utc};
use mash::{
    alerts::{delivery::DeliverWebhook, entity::delivery},
    jobs::{
        self,
        entity::{self as job_row, DEAD, QUEUED, RUNNING},
        queue, schedule,
    },
    mail::SendEmail,
};
use reqwest::Method;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    NO_WORKERS, TestApp,
    accounts::{admin, assert_audited, authed, get_authed, json_of, user_with_role},
    alerts::deliveries_by,
    assert_error, metrics_text, quiet_app, spawn_app_with, ts_of,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const JOBS: &str = "/api/v1/admin/jobs";

fn mail(to: &str) -> SendEmail {
    SendEmail {
        to: to.to_string(),
        subject: "Your seedlings are ready".into(),
        body: "Come and pick them up.".into(),
        alert_id: None,
    }
}

async fn job(app: &TestApp, id: Uuid) -> Option<job_row::Model> {
    job_row::Entity::find_by_id(id).one(&app.state.db).await.expect("job query")
}

async fn job_count(app: &TestApp) -> u64 {
    job_row::Entity::find().count(&app.state.db).await.expect("job count")
}

/// Registering an account queues a verification mail; tests that count jobs start from an
/// empty queue once their accounts exist.
async fn clear_queue(app: &TestApp) {
    job_row::Entity::delete_many().exec(&app.state.db).await.expect("clear the queue");
}

/// Email delivery attempts recorded for `to`, oldest first.
async fn deliveries_to(app: &TestApp, to: &str) -> Vec<delivery::Model> {
    deliveries_by(app, delivery::Column::Target, to).await
}

/// Inserts a `send_email` job whose arguments do not parse (as an older or newer binary, or a
/// hand-edited row, could leave behind).
async fn insert_unparseable_mail(app: &TestApp) -> Uuid {
    let id = Uuid::now_v7();
    let now = app.state.clock.now();
    job_row::Entity::insert(job_row::ActiveModel {
        id: Set(id),
        job_type: Set("send_email".into()),
        payload: Set(json!({"oops": 1})),
        priority: Set(0),
        status: Set(QUEUED.into()),
        attempts: Set(0),
        max_attempts: Set(10),
        run_at: Set(now),
        locked_until: Set(None),
        locked_by: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&app.state.db)
    .await
    .expect("insert a job row");
    id
}

/// A TCP port on loopback that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

fn assert_close(got: DateTime<Utc>, want: DateTime<Utc>) {
    assert!((got - want).num_microseconds().unwrap().abs() <= 1000, "got {got}, want {want}");
}

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

// ---------------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_held_by_a_crashed_worker_runs_once_its_lease_expires() {
    let app = quiet_app(&[]).await;
    let db = &app.state.db;
    let names = app.state.jobs.registry.names();
    let id = jobs::enqueue(db, &mail("crash@example.com")).await.unwrap();

    let now = app.state.clock.now();
    let claimed = queue::claim(db, &names, "crashed-worker", now, Duration::from_secs(30), 1).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(claimed[0].status, RUNNING);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].locked_by.as_deref(), Some("crashed-worker"));
    // The worker dies here, without completing or failing the job.

    // While the lease holds, nobody else runs it.
    assert_eq!(app.run_jobs().await, 0, "a leased job was run by another worker");
    let held = job(&app, id).await.unwrap();
    assert_eq!((held.status.as_str(), held.locked_by.as_deref()), (RUNNING, Some("crashed-worker")));
    assert!(deliveries_to(&app, "crash@example.com").await.is_empty());

    // Past the lease it is recovered and run.
    app.state.clock.advance(chrono::Duration::seconds(90));
    assert_eq!(app.run_jobs().await, 1);
    assert!(job(&app, id).await.is_none(), "the recovered job did not finish");
    let sent = deliveries_to(&app, "crash@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].channel.as_str(), sent[0].status.as_str()), ("email", "logged"));
    assert_eq!(sent[0].attempt, 2, "the crashed run counts as an attempt");
    assert_eq!(app.run_jobs().await, 0);
}

#[tokio::test]
async fn an_expired_lease_on_the_last_attempt_dead_letters_the_job() {
    let app = quiet_app(&[]).await;
    let db = &app.state.db;
    let names = app.state.jobs.registry.names();
    let id = jobs::enqueue(db, &mail("last-try@example.com")).await.unwrap();
    job_row::Entity::update_many()
        .col_expr(job_row::Column::MaxAttempts, sea_orm::sea_query::Expr::value(1))
        .filter(job_row::Column::Id.eq(id))
        .exec(db)
        .await
        .unwrap();
    let now = app.state.clock.now();
    assert_eq!(queue::claim(db, &names, "crashed-worker", now, Duration::from_secs(30), 1).await.unwrap().len(), 1);

    app.state.clock.advance(chrono::Duration::seconds(90));
    assert_eq!(app.run_jobs().await, 0, "a job out of attempts ran again");
    let row = job(&app, id).await.expect("kept as a dead letter");
    assert_eq!(row.status, DEAD, "{row:?}");
    assert!(row.locked_by.is_none() && row.locked_until.is_none(), "{row:?}");
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("lease")), "{row:?}");
    assert!(deliveries_to(&app, "last-try@example.com").await.is_empty());
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_can_neither_finish_nor_fail_the_job() {
    let app = quiet_app(&[]).await;
    let db = &app.state.db;
    let names = app.state.jobs.registry.names();
    let id = jobs::enqueue(db, &mail("slow@example.com")).await.unwrap();
    let lease = Duration::from_secs(30);

    let slow = queue::claim(db, &names, "slow-worker", app.state.clock.now(), lease, 1).await.unwrap();
    assert_eq!(slow.len(), 1);
    app.state.clock.advance(chrono::Duration::seconds(90));
    let now = app.state.clock.now();
    assert_eq!(queue::recover_expired(db, now).await.unwrap(), 1);
    let fresh = queue::claim(db, &names, "fresh-worker", now, lease, 1).await.unwrap();
    assert_eq!(fresh.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(), vec![(id, 2)]);

    // The slow worker finally finishes (or fails): neither touches the job it no longer holds.
    queue::complete(db, id, slow[0].attempts).await.unwrap();
    let row = job(&app, id).await.expect("a stale completion deleted the job");
    assert_eq!((row.status.as_str(), row.locked_by.as_deref()), (RUNNING, Some("fresh-worker")));
    queue::fail(db, &slow[0], "late failure", false, now).await.unwrap();
    let row = job(&app, id).await.unwrap();
    assert_eq!((row.status.as_str(), row.locked_by.as_deref()), (RUNNING, Some("fresh-worker")), "{row:?}");
    assert!(row.last_error.as_deref() != Some("late failure"), "{row:?}");

    // The current holder completes it.
    queue::complete(db, id, fresh[0].attempts).await.unwrap();
    assert!(job(&app, id).await.is_none());
}

// ---------------------------------------------------------------------------------------------
// Exclusive claims
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_never_claim_the_same_job() {
    const JOB_COUNT: usize = 200;
    const WORKERS: usize = 8;
    let app = quiet_app(&[]).await;
    let db = app.state.db.clone();
    let txn = db.begin_write().await.unwrap();
    let mut enqueued = HashSet::new();
    for i in 0..JOB_COUNT {
        enqueued.insert(jobs::enqueue(&txn, &mail(&format!("claim-{i}@example.com"))).await.unwrap());
    }
    txn.commit().await.unwrap();
    assert_eq!(enqueued.len(), JOB_COUNT);

    let names = app.state.jobs.registry.names();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let db = db.clone();
        let names = names.clone();
        let state = app.state.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut mine = Vec::new();
            loop {
                let now = state.clock.now();
                let claimed = queue::claim(&db, &names, &worker, now, Duration::from_secs(600), 5)
                    .await
                    .unwrap_or_else(|e| panic!("{worker}: claim failed: {e}"));
                if claimed.is_empty() {
                    return (worker, mine);
                }
                assert!(claimed.len() <= 5, "{worker} claimed {} jobs with limit 5", claimed.len());
                for j in claimed {
                    assert_eq!((j.status.as_str(), j.locked_by.as_deref()), (RUNNING, Some(worker.as_str())));
                    mine.push(j.id);
                }
            }
        }));
    }
    let mut claimed_by: HashMap<Uuid, Vec<String>> = HashMap::new();
    for t in tasks {
        let (worker, ids) = t.await.expect("a claiming task panicked");
        for id in ids {
            claimed_by.entry(id).or_default().push(worker.clone());
        }
    }
    let twice: Vec<_> = claimed_by.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{} jobs claimed more than once, e.g. {:?}",
        twice.len(),
        twice.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(claimed_by.keys().copied().collect::<HashSet<_>>(), enqueued, "every job claimed exactly once");

    // The database agrees: each job is leased to the worker that got it, once.
    let rows = job_row::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), JOB_COUNT);
    for r in rows {
        assert_eq!(r.status, RUNNING, "{r:?}");
        assert_eq!(r.attempts, 1, "{r:?}");
        assert_eq!(r.locked_by.as_ref(), claimed_by[&r.id].first(), "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

/// How many jobs of each type are in the queue.
async fn jobs_by_type(app: &TestApp) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in job_row::Entity::find().all(&app.state.db).await.unwrap() {
        *out.entry(r.job_type).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_enqueue_each_round_of_a_periodic_job_once() {
    let a = quiet_app(&[]).await;
    let b = a.spawn_sibling(NO_WORKERS).await;
    let periodic_a = schedule::periodic(&a.state);
    let periodic_b = schedule::periodic(&b.state);
    let mut names: Vec<&str> = periodic_a.iter().map(|p| p.name).collect();
    names.sort_unstable();
    assert!(!names.is_empty());
    let longest = periodic_a.iter().map(|p| p.every).max().unwrap();

    let (ra, rb) = tokio::join!(
        schedule::register(&a.state.db, &periodic_a, a.state.clock.now()),
        schedule::register(&b.state.db, &periodic_b, b.state.clock.now()),
    );
    ra.expect("register on a");
    rb.expect("register on b");
    let schedules = job_row::schedule::Entity::find().all(&a.state.db).await.unwrap();
    assert_eq!(schedules.len(), names.len(), "{schedules:?}");

    for round in 1..=2 {
        if round > 1 {
            // Next round: past the longest interval on both instances.
            let by = chrono::Duration::from_std(longest).unwrap() + chrono::Duration::minutes(1);
            a.state.clock.advance(by);
            b.state.clock.advance(by);
        }
        let (ta, tb) = tokio::join!(schedule::tick(&a.state, &periodic_a), schedule::tick(&b.state, &periodic_b));
        let (ta, tb) = (ta.expect("tick on a"), tb.expect("tick on b"));
        let mut both: Vec<&str> = ta.iter().chain(tb.iter()).copied().collect();
        both.sort_unstable();
        assert_eq!(both, names, "round {round}: a enqueued {ta:?}, b enqueued {tb:?}");
        let want: HashMap<String, usize> = names.iter().map(|n| (n.to_string(), round)).collect();
        assert_eq!(jobs_by_type(&a).await, want, "round {round}");

        // The round is taken: ticking again (on either instance) enqueues nothing.
        let (ta, tb) = tokio::join!(schedule::tick(&a.state, &periodic_a), schedule::tick(&b.state, &periodic_b));
        assert_eq!((ta.unwrap(), tb.unwrap()), (vec![], vec![]), "round {round} enqueued twice");
        assert_eq!(jobs_by_type(&a).await, want, "round {round}");
    }
    // Registering again (a restart) keeps the schedule: nothing is due before its time.
    schedule::register(&b.state.db, &periodic_b, b.state.clock.now()).await.expect("register again");
    let (ta, tb) = tokio::join!(schedule::tick(&a.state, &periodic_a), schedule::tick(&b.state, &periodic_b));
    assert_eq!((ta.unwrap(), tb.unwrap()), (vec![], vec![]), "registering again made a round due");
    let later = job_row::schedule::Entity::find().all(&a.state.db).await.unwrap();
    assert!(later.iter().all(|s| s.last_run_at.is_some() && s.next_run_at > a.state.clock.now()), "{later:?}");
}

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
