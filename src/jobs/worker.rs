//! Workers: claim due jobs, run each under its timeout, record the outcome. `mash serve` runs
//! them beside the API unless `JOB_WORKERS=0`; `mash worker` runs only them.

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseBackend;
use tokio::{sync::Semaphore, task::JoinHandle};
use tracing::Instrument;

use super::{Permanent, entity, queue};
use crate::{metrics::JobLabels, state::AppState};

/// How long a claimed job is leased beyond twice its own timeout (it may wait for one running
/// job before it starts) before another worker may take it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Where finished jobs go to be deleted: at once (`None`), or handed to the loop's completer,
/// which removes everything that finished meanwhile in one statement (one write transaction
/// for many jobs, which is what SQLite's single writer needs under load).
type Completer = Option<tokio::sync::mpsc::UnboundedSender<(uuid::Uuid, i32)>>;

/// Runs one claimed job and records what happened.
async fn execute(state: &AppState, job: entity::Model, completer: &Completer) {
    let Some(kind) = state.jobs.registry.get(&job.job_type) else {
        // Claims only ask for registered types; this is a bug, not a retry case.
        tracing::error!(job_id = %job.id, job_type = %job.job_type, "claimed a job type this binary does not know");
        return;
    };
    let started = state.clock.now();
    let labels = JobLabels { job: kind.name };
    let waited = (started - job.run_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
    state.metrics.job_wait.get_or_create(&labels).observe(waited);
    let span = tracing::info_span!("job", job_id = %job.id, job_type = kind.name, attempt = job.attempts);
    // The span follows the run's future (never entered across an await, which would lend it
    // to whatever else the thread runs meanwhile), so each log line names its own job.
    let run = kind.run(job.payload.clone(), state, super::Run { id: job.id, attempt: job.attempts });
    let result = tokio::time::timeout(kind.timeout, run.instrument(span.clone())).await;
    let elapsed = (state.clock.now() - started).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
    state.metrics.job_duration.get_or_create(&labels).observe(elapsed);
    let outcome = match result {
        Ok(Ok(())) => match completer {
            Some(tx) if tx.send((job.id, job.attempts)).is_ok() => Ok("success"),
            _ => queue::complete(&state.db, job.id, job.attempts).await.map(|()| "success"),
        },
        Ok(Err(e)) => {
            let permanent = e.downcast_ref::<Permanent>().is_some();
            let message = format!("{e:#}");
            let failed = queue::fail(&state.db, &job, &message, permanent, state.clock.now()).await;
            match failed {
                Ok(queue::Failed::Retry) => {
                    tracing::warn!(parent: &span, error = %message, "job failed; will retry");
                    Ok("retry")
                }
                Ok(queue::Failed::Dead) => {
                    tracing::error!(parent: &span, error = %message, "job failed for the last time; dead-lettered");
                    Ok("dead")
                }
                Err(e) => Err(e),
            }
        }
        Err(_) => {
            let message = format!("timed out after {} s", kind.timeout.as_secs_f64());
            tracing::warn!(parent: &span, "job timed out");
            queue::fail(&state.db, &job, &message, false, state.clock.now()).await.map(|f| match f {
                queue::Failed::Retry => "retry",
                queue::Failed::Dead => "dead",
            })
        }
    };
    match outcome {
        Ok(outcome) => {
            state.metrics.jobs_finished.get_or_create(&crate::metrics::JobOutcome { job: kind.name, outcome }).inc();
        }
        // The lease runs out and the job is retried: runs are idempotent.
        Err(e) => tracing::warn!(parent: &span, error = %e, "could not record a job's outcome"),
    };
}

fn lease(state: &AppState) -> Duration {
    let longest =
        state.jobs.registry.names().iter().filter_map(|n| state.jobs.registry.get(n)).map(|k| k.timeout).max();
    longest.unwrap_or(Duration::from_secs(60)) * 2 + LEASE_MARGIN
}

/// Each job type's lease: twice its timeout plus a margin.
fn leases(state: &AppState) -> Vec<(&'static str, Duration)> {
    let registry = &state.jobs.registry;
    registry
        .names()
        .into_iter()
        .filter_map(|n| registry.get(n).map(|k| (k.name, k.timeout * 2 + LEASE_MARGIN)))
        .collect()
}

/// Runs every job that is due now, one at a time, until none is left; returns how many runs
/// happened. Tests drive background work with this (crates.io's `run_pending_background_jobs`).
pub async fn run_pending(state: &AppState) -> anyhow::Result<usize> {
    let names = state.jobs.registry.names();
    let mut runs = 0;
    loop {
        let now = state.clock.now();
        queue::recover_expired(&state.db, now).await?;
        let jobs = queue::claim(&state.db, &names, &state.jobs.worker_id, now, lease(state), 1).await?;
        if jobs.is_empty() {
            return Ok(runs);
        }
        for job in jobs {
            execute(state, job, &None).await;
            runs += 1;
        }
    }
}

/// The worker loop: up to `JOB_CONCURRENCY` jobs at once, woken by enqueues (in process, and by
/// `NOTIFY` on PostgreSQL) and by a poll.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if state.db.get_database_backend() == DatabaseBackend::Postgres {
        tasks.push(spawn_listener(state.clone()));
    }
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(uuid::Uuid, i32)>();
    let completer_state = state.clone();
    tasks.push(tokio::spawn(async move {
        let state = completer_state;
        let mut batch = Vec::new();
        while done_rx.recv_many(&mut batch, 500).await > 0 {
            // A failure leaves the jobs leased; they run again when the lease ends (runs are
            // idempotent), so one retry here is enough.
            if let Err(e) = gated(&state, queue::complete_many(&state.db, &batch)).await {
                tracing::warn!(error = %e, jobs = batch.len(), "could not remove finished jobs; retrying once");
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Err(e) = gated(&state, queue::complete_many(&state.db, &batch)).await {
                    tracing::warn!(error = %e, jobs = batch.len(), "finished jobs stay leased and will run again");
                }
            }
            batch.clear();
        }
    }));
    let state = state.clone();
    tasks.push(tokio::spawn(async move {
        let completer: Completer = Some(done_tx);
        let leases = leases(&state);
        let concurrency = state.config.jobs.concurrency;
        // At most `concurrency` jobs run at once; up to as many more wait claimed, so claims come
        // in batches (one statement per several jobs) while the running ones finish. A waiting
        // job waits for at most one running job, which its lease (twice its timeout) allows.
        let running = Arc::new(Semaphore::new(concurrency));
        let claimed = Arc::new(Semaphore::new(concurrency * 2));
        let poll = state.config.jobs.poll_interval;
        let mut last_recovery = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            // Claim when at least `concurrency` claim slots are free (all of them when idle).
            let mut permits = Vec::with_capacity(concurrency * 2);
            for _ in 0..concurrency {
                let Ok(p) = claimed.clone().acquire_owned().await else { return };
                permits.push(p);
            }
            while let Ok(p) = claimed.clone().try_acquire_owned() {
                permits.push(p);
            }
            let now = state.clock.now();
            if last_recovery.elapsed() >= Duration::from_secs(5) {
                last_recovery = std::time::Instant::now();
                match gated(&state, queue::recover_expired(&state.db, now)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "recovered jobs whose lease expired"),
                    Err(e) => tracing::warn!(error = %e, "could not recover expired job leases"),
                }
            }
            let claim = queue::claim_leased(&state.db, &leases, &state.jobs.worker_id, now, permits.len() as u64);
            let jobs = match gated(&state, claim).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim jobs; retrying");
                    drop(permits);
                    tokio::time::sleep(poll).await;
                    continue;
                }
            };
            let full = jobs.len() == permits.len();
            for job in jobs {
                let slot = permits.pop().expect("one claim slot per claimed job");
                let (state, completer, running) = (state.clone(), completer.clone(), running.clone());
                tokio::spawn(async move {
                    let Ok(_run) = running.acquire_owned().await else { return };
                    execute(&state, job, &completer).await;
                    drop(slot);
                });
            }
            drop(permits);
            if !full {
                // Nothing more is due: sleep until woken or the poll interval passes.
                tokio::select! {
                    () = state.jobs.wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
    }));
    tasks
}

/// Runs a write in this process's turn at SQLite's write lock ([`crate::db::Db::gate`]).
async fn gated<T>(state: &AppState, write: impl std::future::Future<Output = T>) -> T {
    let _gate = state.db.gate().await;
    write.await
}

/// Turns `NOTIFY mash_jobs` from any instance into a local wake-up.
fn spawn_listener(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let pool = state.db.get_postgres_connection_pool();
            let listened = async {
                let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(super::CHANNEL).await?;
                // Anything enqueued while we were not listening is found by this wake-up.
                state.jobs.wake();
                loop {
                    listener.recv().await?;
                    state.jobs.wake();
                }
                #[expect(unreachable_code, reason = "the loop only ends with an error")]
                Ok::<(), sea_orm::sqlx::Error>(())
            }
            .await;
            if let Err(e) = listened {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "job wake-up listener lost");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}

/// Refreshes the queue gauges every few seconds.
pub fn spawn_gauges(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match queue::counts(&state.db).await {
                Ok(counts) => state.metrics.set_job_gauges(&counts),
                Err(e) => tracing::debug!(error = %e, "could not count jobs"),
            }
        }
    })
}
