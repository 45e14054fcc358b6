//! The durable job queue, kept in our own database (`background_jobs`), in the shape of
//! crates.io's `BackgroundJob`: a job is a serde struct with a `NAME` and an idempotent `run`,
//! and every job type is listed in one explicit [`registry`].
//!
//! - **Transactional enqueue.** [`enqueue`] takes any SeaORM connection, a transaction
//!   included: a job enqueued inside the caller's transaction commits or rolls back with it
//!   (an alert and its notifications, readings and their rule evaluation).
//! - **Claims.** One statement leases due jobs (`UPDATE … WHERE id IN (SELECT … FOR UPDATE
//!   SKIP LOCKED) RETURNING`): on PostgreSQL concurrent workers skip each other's rows; on
//!   SQLite the single writer serialises claims. Two workers never hold one job at once.
//! - **Retries.** A failed run is retried after an exponential backoff with jitter, up to the
//!   job type's `MAX_ATTEMPTS`, then the job is dead-lettered (`status = 'dead'`) with its last
//!   error. A job whose worker died is found by its expired lease and retried.
//! - **Wakeups.** Enqueue sends `NOTIFY mash_jobs` on PostgreSQL (delivered at commit, to every
//!   instance); in process, [`JobsState::wake`] after a commit. Workers also poll.
//! - **Schedules.** [`schedule`] enqueues periodic jobs once per round across all instances.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

mod admin;
pub mod entity;
pub mod queue;
pub mod registry;
pub mod schedule;
pub mod worker;

pub use admin::router;
pub use worker::run_pending;

use crate::state::AppState;

/// The PostgreSQL `NOTIFY` channel that wakes workers.
pub const CHANNEL: &str = "mash_jobs";

/// A kind of background work.
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stored in `background_jobs.job_type`; never rename one that may be queued.
    const NAME: &'static str;
    /// Higher runs first.
    const PRIORITY: i16 = 0;
    /// Runs before the job is dead-lettered.
    const MAX_ATTEMPTS: i32 = 5;
    /// A run still going after this is abandoned (and retried).
    const TIMEOUT: Duration = Duration::from_secs(60);

    /// Does the work. Must be safe to run again after a failure or a crash part-way.
    fn run(&self, state: &AppState, run: Run) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Which run of which job a [`BackgroundJob::run`] is: given by the worker that claimed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub id: Uuid,
    /// 1 for the first run, counting every claim.
    pub attempt: i32,
}

/// An error after which retrying cannot help (bad arguments, a target that no longer exists):
/// the job is dead-lettered at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// Enqueues `job` to run now, inside the caller's transaction when `db` is one.
pub async fn enqueue<C: ConnectionTrait, J: BackgroundJob>(db: &C, job: &J) -> Result<Uuid, DbErr> {
    enqueue_at(db, job, Utc::now()).await
}

/// Enqueues `job` to run at `run_at`.
pub async fn enqueue_at<C: ConnectionTrait, J: BackgroundJob>(
    db: &C,
    job: &J,
    run_at: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let row = NewJob::of(job, run_at)?;
    insert(db, std::slice::from_ref(&row)).await?;
    Ok(row.id)
}

/// Inserts job rows, inside the caller's transaction when `db` is one: the one place that
/// writes new rows into `background_jobs`. On PostgreSQL it also sends `NOTIFY mash_jobs`,
/// delivered at commit (or now, outside a transaction) to every listening instance.
pub async fn insert<C: ConnectionTrait>(db: &C, jobs: &[NewJob]) -> Result<(), DbErr> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let rows = jobs.iter().map(|j| entity::ActiveModel {
        id: Set(j.id),
        job_type: Set(j.job_type.to_string()),
        payload: Set(j.payload.clone()),
        priority: Set(j.priority),
        status: Set(entity::QUEUED.to_string()),
        attempts: Set(0),
        max_attempts: Set(j.max_attempts),
        run_at: Set(j.run_at),
        locked_until: Set(None),
        locked_by: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    });
    entity::Entity::insert_many(rows).exec_without_returning(db).await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await?;
    }
    Ok(())
}

/// A job row about to be inserted: made where the job is decided (an evaluation for a
/// telemetry batch), inserted with [`insert`] in the transaction it belongs to.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub job_type: &'static str,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
}

impl NewJob {
    pub fn of<J: BackgroundJob>(job: &J, run_at: DateTime<Utc>) -> Result<Self, DbErr> {
        Ok(Self {
            id: Uuid::now_v7(),
            job_type: J::NAME,
            payload: serde_json::to_value(job).map_err(|e| DbErr::Custom(format!("job arguments: {e}")))?,
            priority: J::PRIORITY,
            max_attempts: J::MAX_ATTEMPTS,
            run_at,
        })
    }
}

/// A job that does nothing: the queue's own cost, for the benchmark and for operators checking
/// that workers run.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct Noop {}

impl BackgroundJob for Noop {
    const NAME: &'static str = "noop";

    async fn run(&self, _state: &AppState, _run: Run) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Process-wide queue state.
pub struct JobsState {
    /// Wakes this process's workers (after a commit that enqueued).
    pub wake: tokio::sync::Notify,
    pub registry: registry::Registry,
    /// This process's worker id, kept in `locked_by`.
    pub worker_id: String,
}

impl Default for JobsState {
    fn default() -> Self {
        Self {
            wake: tokio::sync::Notify::new(),
            registry: registry::registry(),
            worker_id: format!("{}-{}", hostname(), &Uuid::now_v7().simple().to_string()[20..]),
        }
    }
}

impl JobsState {
    /// Call after committing a transaction that enqueued, so local workers start at once.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "mash".into()).chars().take(40).collect()
}
