//! The evaluation jobs: `evaluate_readings` (enqueued by ingestion; a run also takes on the
//! evaluations queued meanwhile) and `check_stale` (periodic, [`stale`]). Both change alerts the
//! same way ([`apply`]), in one transaction that holds the `alert_series_states` rows of the
//! (device, metric) series it touches ([`series`]): evaluations of the same readings are
//! serialised across workers and instances, state and alert changes commit together with their
//! delivery jobs, and a retried run skips readings it already saw.
//!
//! A run: [`gather`] reads the readings of its evaluations (before the write transaction),
//! [`step`] steps each (rule, device) through them under the series' locks, [`apply`] turns the
//! outcomes into alert changes, [`states`] keeps each rule's own state per device.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod apply;
mod gather;
mod rows;
mod series;
mod stale;
mod states;
mod step;

pub use stale::CheckStale;

use crate::{
    ids::{DeviceId, RuleId},
    jobs::{self, BackgroundJob},
    state::AppState,
};

/// A (rule, device).
type Pair = (RuleId, DeviceId);

/// The readings of one accepted batch that a grower's rules watch, by reference: the devices
/// and metrics, and the time range they span. The readings themselves are read back from
/// `sensor_readings` (the batch committed with this job), so a job row stays small whatever
/// the batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateReadings {
    pub grower_id: Uuid,
    pub devices: Vec<Uuid>,
    pub metrics: Vec<String>,
    /// First and last reading time, in microseconds since the epoch.
    pub from_us: i64,
    pub to_us: i64,
    /// When the batch was accepted (ms since the epoch), for `alert_event_latency_seconds`.
    pub accepted_at_ms: i64,
}

impl BackgroundJob for EvaluateReadings {
    const NAME: &'static str = "evaluate_readings";
    const PRIORITY: i16 = 10;
    const MAX_ATTEMPTS: i32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Evaluations queued meanwhile (any grower's) are done in this run too: one transaction and
    /// one state write per (rule, device) for all of them, instead of one each. The jobs taken
    /// are removed in that transaction, so they are done exactly when it commits.
    ///
    /// The readings are read before the write transaction starts (on SQLite, before this run
    /// queues for the write lock): each job committed with its readings, which never change.
    /// Whatever another run evaluates meanwhile is skipped here, because the transaction reads
    /// each series' position (the last reading evaluated) under its lock.
    async fn run(&self, state: &AppState, _run: jobs::Run) -> anyhow::Result<()> {
        let now = state.clock.now();
        let mut batch = vec![self.clone()];
        let queued = jobs::queue::due(&state.db, Self::NAME, now, TAKE_QUEUED).await?;
        let candidates = parse_taken(queued, &mut batch);
        let gathered = gather::gather(state, &batch).await?;
        let txn = state.db.begin_write().await?;
        let ids: Vec<Uuid> = candidates.iter().map(|t| t.0).collect();
        let removed = jobs::queue::remove_taken(&txn, &ids).await?;
        let changed = step::evaluate(state, &txn, gathered, now).await?;
        txn.commit().await?;
        let taken: Vec<(Uuid, DateTime<Utc>)> = candidates.into_iter().filter(|t| removed.contains(&t.0)).collect();
        finished(state, &taken, now);
        if changed {
            state.jobs.wake();
        }
        Ok(())
    }
}

/// How many queued evaluations one run takes on besides its own.
const TAKE_QUEUED: u64 = 255;

/// Keeps the jobs whose arguments parse (adding them to `batch`) as (id, due time). A payload
/// that does not parse is left to fail as its own job (and be dead-lettered).
fn parse_taken(jobs: Vec<jobs::entity::Model>, batch: &mut Vec<EvaluateReadings>) -> Vec<(Uuid, DateTime<Utc>)> {
    let mut taken = Vec::new();
    for job in jobs {
        if let Ok(args) = serde_json::from_value::<EvaluateReadings>(job.payload) {
            taken.push((job.id, job.run_at));
            batch.push(args);
        }
    }
    taken
}

/// Counts the jobs a run took on as finished.
fn finished(state: &AppState, taken: &[(Uuid, DateTime<Utc>)], now: DateTime<Utc>) {
    let labels = crate::metrics::JobLabels { job: EvaluateReadings::NAME };
    for (_, run_at) in taken {
        let waited = Ord::max((now - *run_at).num_microseconds().unwrap_or(0), 0) as f64 / 1e6;
        state.metrics.job_wait.get_or_create(&labels).observe(waited);
    }
    let outcome = crate::metrics::JobOutcome { job: EvaluateReadings::NAME, outcome: "success" };
    state.metrics.jobs_finished.get_or_create(&outcome).inc_by(taken.len() as u64);
}
