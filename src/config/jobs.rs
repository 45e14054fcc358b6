//! The job queue's workers: how many run here, how often they poll, how long the dead are kept.

use std::time::Duration;

use super::env::{ConfigError, Env};

/// The job queue's workers.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once by this process; 0 means `serve` runs no workers (run `mash worker`).
    pub concurrency: usize,
    /// How often idle workers look for due jobs when no wake-up came.
    pub poll_interval: Duration,
    /// Dead jobs and delivery records are kept this long.
    pub dead_retention_days: u32,
}

impl JobsConfig {
    pub(super) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let concurrency: usize = env.ranged("JOB_CONCURRENCY", 4, 0..=256, "a whole number")?;
        let poll_ms: u64 = env.ranged("JOB_POLL_MS", 1000, 10..=60_000, "a number of milliseconds")?;
        let dead_retention_days: u32 = env.ranged("JOB_DEAD_RETENTION_DAYS", 30, 1..=3650, "a number of days")?;
        Ok(Self { concurrency, poll_interval: Duration::from_millis(poll_ms), dead_retention_days })
    }
}
