//! The durable job queue, kept in our own database (`background_jobs`), in the shape of
//! crates.io's `BackgroundJob`: a job is a serde struct with a `NAME` and an idempotent `run`,
//! and every job type is listed in one explicit [`registry`].
//!
//! - **Transactional enqueue** ([`enqueue`]): [`enqueue`] takes any SeaORM connection, a
//!   transaction included: a job enqueued inside the caller's transaction commits or rolls back
//!   with it (an alert and its notifications, readings and their rule evaluation).
//! - **Claims** ([`queue`]): one statement leases due jobs (`UPDATE … WHERE id IN (SELECT … FOR
//!   UPDATE SKIP LOCKED) RETURNING`): on PostgreSQL concurrent workers skip each other's rows; on
//!   SQLite the single writer serialises claims. Two workers never hold one job at once.
//! - **Retries**: a failed run is retried after an exponential backoff with jitter, up to the
//!   job type's `MAX_ATTEMPTS`, then the job is dead-lettered ([`JobStatus::Dead`]) with its last
//!   error. A job whose worker died is found by its expired lease and retried.
//! - **Wake-ups** ([`wake`]): in process, [`JobsState::wake`] after a commit; across instances,
//!   `NOTIFY mash_jobs` on PostgreSQL. Workers also poll.
//! - **Schedules** ([`schedule`]): periodic jobs, enqueued once per round across all instances.

use std::{future::Future, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

mod admin;
mod enqueue;
pub mod entity;
pub mod queue;
pub mod registry;
pub mod schedule;
mod state;
mod upkeep;
pub mod wake;
pub mod worker;

pub use admin::router;
pub use enqueue::{NewJob, enqueue, enqueue_at, insert};
pub use entity::JobStatus;
pub use state::JobsState;
pub use upkeep::Upkeep;
pub use wake::CHANNEL;
pub use worker::run_pending;

use crate::state::AppState;

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
