//! SQLite with the job workers in this process: a batch's watched readings go to the evaluator
//! in memory once the batch has committed, instead of as an `evaluate_readings` job row written
//! with it.
//!
//! On SQLite every write is a turn at one lock, and a job row costs the batch's own turn more
//! pages, then a claim and a removal of its own; the evaluator needs none of that to know what
//! to evaluate, because what it has done is already durable: `alert_series_states` keeps, per
//! (device, metric), the last reading evaluated. So the hand-over itself need not be durable.
//! Whatever was committed but not evaluated when the process stopped (or when an evaluation
//! failed, or the inbox was full) is found again by [`sweep`]: the series whose latest stored
//! reading (`device_state`) is newer than the last one evaluated. The evaluator sweeps when it
//! starts and after any failure, so a crash loses no evaluation.
//!
//! PostgreSQL keeps the job rows: there a batch and its jobs are one statement, and runs on
//! several workers and instances share the work. So does SQLite when this process runs no
//! workers (`JOB_CONCURRENCY=0`): another process evaluates, and only rows reach it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    RulesByGrower,
    entity::{rule, series_state},
    evaluate::{self, Gathered},
};
use crate::{greenhouse::entity::device, state::AppState, telemetry::store::Reading};

/// Readings waiting in memory beyond which new hand-overs are dropped (and found by a sweep
/// instead): memory stays bounded however far evaluation falls behind.
const MAX_PENDING_READINGS: usize = 200_000;

/// Devices evaluated per transaction by a sweep.
const SWEEP_DEVICES_PER_RUN: usize = 64;

/// One committed batch's readings that a grower's enabled rules watch.
pub struct Handed {
    pub grower_id: Uuid,
    /// When the batch was accepted (ms since the epoch), for `alert_event_latency_seconds`.
    pub accepted_at_ms: i64,
    pub readings: Vec<Reading>,
}

#[derive(Default)]
struct Pending {
    batches: Vec<Handed>,
    readings: usize,
    /// A hand-over was dropped: sweep once what is pending has been evaluated.
    overflowed: bool,
    /// Readings taken by the run in progress.
    running: usize,
}

impl Pending {
    /// `alert_evaluation_backlog`: handed over and not evaluated yet.
    fn backlog(&self) -> i64 {
        (self.readings + self.running) as i64
    }
}

/// The evaluator's inbox; ingestion hands batches over only while [`Inbox::is_live`].
#[derive(Default)]
pub struct Inbox {
    live: AtomicBool,
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
}

impl Inbox {
    /// Whether an evaluator runs in this process (SQLite with workers): then ingestion writes no
    /// evaluation jobs and hands its watched readings over after the commit.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Hands committed readings to the evaluator.
    pub fn hand_over(&self, state: &AppState, handed: Vec<Handed>) {
        if handed.is_empty() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let count: usize = handed.iter().map(|h| h.readings.len()).sum();
        if p.readings + count > MAX_PENDING_READINGS {
            // Stored already: the sweep after this backlog finds them in the database.
            p.overflowed = true;
        } else {
            p.readings += count;
            p.batches.extend(handed);
        }
        state.metrics.alert_evaluation_backlog.set(p.backlog());
        drop(p);
        self.wake.notify_one();
    }

    /// Takes everything pending for a run, which ends with [`Inbox::ran`].
    fn take(&self) -> (Vec<Handed>, bool) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let running = p.readings;
        let taken = std::mem::replace(&mut *p, Pending { running, ..Default::default() });
        (taken.batches, taken.overflowed)
    }

    fn ran(&self, state: &AppState) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.running = 0;
        state.metrics.alert_evaluation_backlog.set(p.backlog());
    }
}

/// Starts the evaluator (SQLite only; PostgreSQL evaluates through jobs).
pub fn spawn(state: &AppState) -> Option<JoinHandle<()>> {
    if crate::db::backend(&state.db) != sea_orm::DatabaseBackend::Sqlite {
        return None;
    }
    let state = state.clone();
    Some(tokio::spawn(async move {
        // A run that panics must not leave ingestion handing readings to nobody: start over,
        // with a sweep for what it held.
        struct AbortOnDrop(JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        loop {
            // Aborted with this task at shutdown.
            let mut evaluator = AbortOnDrop(tokio::spawn(run(state.clone())));
            match (&mut evaluator.0).await {
                Err(e) if e.is_panic() => {
                    tracing::error!("the alert evaluator panicked; restarting it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    }))
}

/// Live from the start, so nothing committed from now on is missed; then a sweep for what was
/// committed before; then each batch of hand-overs, at most one run per `ALERT_EVAL_BATCH_MS`
/// (runs share that pace, and the turn, with `evaluate_readings` jobs still queued).
async fn run(state: AppState) {
    let inbox = &state.alerts.inbox;
    inbox.live.store(true, Ordering::Release);
    let mut must_sweep = true;
    let mut retry = Duration::from_millis(100);
    loop {
        if must_sweep {
            match sweep(&state).await {
                Ok(0) => {}
                Ok(readings) => tracing::info!(readings, "evaluated stored readings that had not been evaluated"),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = retry.as_millis() as u64, "alert sweep failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            retry = Duration::from_millis(100);
        }
        inbox.wake.notified().await;
        let mut turn = state.alerts.evaluation.lock().await;
        if let Some(last) = turn.last_start {
            tokio::time::sleep_until((last + state.config.alerts.eval_batch).into()).await;
        }
        turn.last_start = Some(Instant::now());
        let (handed, overflowed) = inbox.take();
        must_sweep = overflowed;
        let evaluated = evaluate_handed(&state, handed).await;
        inbox.ran(&state);
        drop(turn);
        if let Err(e) = evaluated {
            // The readings are stored: the sweep evaluates them from the database.
            tracing::warn!(error = %e, "alert evaluation failed; its readings will be read back");
            must_sweep = true;
        }
    }
}

async fn evaluate_handed(state: &AppState, handed: Vec<Handed>) -> Result<(), DbErr> {
    if handed.is_empty() {
        return Ok(());
    }
    let now = state.clock.now();
    // Per device: its grower and its readings as (metric, ts, value).
    type Readings = Vec<(String, DateTime<Utc>, f64)>;
    let mut per_device: BTreeMap<Uuid, (Uuid, Readings)> = BTreeMap::new();
    let mut g = Gathered::default();
    for h in handed {
        for r in h.readings {
            g.accepted_at(r.device_id, h.accepted_at_ms);
            per_device
                .entry(r.device_id)
                .or_insert_with(|| (h.grower_id, Vec::new()))
                .1
                .push((r.metric, r.ts, r.value));
        }
    }
    let mut rules = RulesByGrower::default();
    for (device, (grower, readings)) in per_device {
        g.add_device(&*rules.of(&state.db, &state.alerts, grower).await?, device, readings);
    }
    commit(state, g.finish(), now).await
}

/// One evaluation transaction at this process's turn at the write lock.
async fn commit(state: &AppState, g: Gathered, now: DateTime<Utc>) -> Result<(), DbErr> {
    if g.is_empty() {
        return Ok(());
    }
    let _gate = crate::db::write_gate(&state.db).await;
    let txn = crate::db::begin_write(&state.db).await?;
    let changed = evaluate::evaluate(state, &txn, g, now).await?;
    txn.commit().await?;
    if changed {
        state.jobs.wake();
    }
    Ok(())
}

/// Evaluates the stored readings that were never evaluated: for every (device, metric) that an
/// enabled rule watches and whose latest stored reading is newer than the last one evaluated,
/// the readings after that one (or, for a series never evaluated, those since the first rule
/// watching it was created). Returns how many readings were read back.
pub async fn sweep(state: &AppState) -> Result<usize, DbErr> {
    let now = state.clock.now();
    let growers: Vec<Uuid> = rule::Entity::find()
        .select_only()
        .column(rule::Column::GrowerId)
        .distinct()
        .filter(rule::Column::Enabled.eq(true))
        .filter(rule::Column::DeletedAt.is_null())
        .into_tuple()
        .all(&state.db)
        .await?;
    if growers.is_empty() {
        return Ok(0);
    }
    let owners = crate::greenhouse::devices::live_growers(&state.db, device::Column::GrowerId.is_in(growers)).await?;
    let evaluated: HashMap<(Uuid, String), DateTime<Utc>> = series_state::Entity::find()
        .all(&state.db)
        .await?
        .into_iter()
        .filter_map(|s| s.last_ts.map(|t| ((s.device_id, s.metric), t)))
        .collect();
    let latest = crate::telemetry::store::latest_times(&state.db).await?;
    // Per device: its grower, and (metric, read from) per series behind.
    type Series = Vec<(String, DateTime<Utc>)>;
    let mut behind: BTreeMap<Uuid, (Uuid, Series)> = BTreeMap::new();
    let mut rules = RulesByGrower::default();
    for (device, metric, latest) in latest {
        let Some(&grower) = owners.get(&device) else { continue };
        let watch = rules.of(&state.db, &state.alerts, grower).await?;
        let Some(since) = watch
            .rules
            .iter()
            .filter(|r| r.metric == metric && r.device_id.is_none_or(|d| d == device))
            .map(|r| r.created_at)
            .min()
        else {
            continue;
        };
        let last = evaluated.get(&(device, metric.clone())).copied();
        // Readings after the last one evaluated; for a series never evaluated, from `since` on.
        let from = last.unwrap_or(since);
        if latest > from || (last.is_none() && latest == from) {
            behind.entry(device).or_insert_with(|| (grower, Vec::new())).1.push((metric, from));
        }
    }
    let mut read = 0;
    let until = now + chrono::Duration::days(365 * 100);
    let devices: Vec<_> = behind.into_iter().collect();
    for chunk in devices.chunks(SWEEP_DEVICES_PER_RUN) {
        let mut g = Gathered::default();
        for (device, (grower, series)) in chunk {
            let watch = rules.of(&state.db, &state.alerts, *grower).await?;
            for (metric, from) in series {
                let readings = crate::telemetry::store::readings_between(
                    &state.db,
                    &[*device],
                    std::slice::from_ref(metric),
                    *from,
                    until,
                )
                .await?;
                read += readings.len();
                g.add_device(&watch, *device, readings.into_iter().map(|r| (r.metric, r.ts, r.value)));
            }
        }
        // Held across the transaction, so no queued `evaluate_readings` run interleaves.
        let _turn = state.alerts.evaluation.lock().await;
        commit(state, g.finish(), now).await?;
    }
    if read > 0 {
        state.metrics.alert_readings_swept.inc_by(read as u64);
    }
    Ok(read)
}
