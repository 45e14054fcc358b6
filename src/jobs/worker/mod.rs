//! Workers: claim due jobs, run each under its timeout, record the outcome. `mash serve` runs
//! them beside the API unless `JOB_CONCURRENCY=0`; `mash worker` runs only them ([`spawn`]);
//! tests run what is due with [`run_pending`].

use std::time::Duration;

use tracing::Instrument;

mod pool;

pub use pool::{spawn, spawn_gauges};

use super::{Permanent, entity, queue};
use crate::{metrics::JobLabels, state::AppState};

/// How long a claimed job is leased beyond twice its own timeout (it may wait for one running
/// job before it starts) before another worker may take it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Where finished jobs go to be deleted: at once (`None`), or handed to the loop's completer,
/// which removes everything that finished meanwhile in one statement (one write transaction
/// for many jobs, which is what SQLite's single writer needs under load).
pub(super) type Completer = Option<tokio::sync::mpsc::UnboundedSender<(uuid::Uuid, i32)>>;

/// Runs one claimed job and records what happened.
pub(super) async fn execute(state: &AppState, job: entity::Model, completer: &Completer) {
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
pub(super) fn leases(state: &AppState) -> Vec<(&'static str, Duration)> {
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
