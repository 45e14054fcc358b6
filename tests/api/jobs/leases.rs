//! Leases (a crashed worker's job runs again once its lease expires; a worker that lost its
//! lease can neither finish nor fail the job) and claims no two workers share.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use mash::jobs::{
    self,
    entity::{self as job_row, DEAD, RUNNING},
    queue,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::helpers::quiet_app;

use super::{deliveries_to, job, mail};

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
