//! The telemetry maintenance task: creates the next days' partitions ahead of time
//! (PostgreSQL) and applies `TELEMETRY_RETENTION_DAYS`. It runs at start and then every
//! `TELEMETRY_MAINTENANCE_SECS`; every step is idempotent, so several instances may run it.

use std::collections::HashSet;

use chrono::{Duration, NaiveDate, Utc};
use sea_orm::DatabaseBackend;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Days ahead of today that always have a partition.
const DAYS_AHEAD: i64 = 3;

/// One round of maintenance.
pub async fn run_once(state: &AppState) -> anyhow::Result<()> {
    let today = Utc::now().date_naive();
    if state.db.get_database_backend() == DatabaseBackend::Postgres {
        let days: HashSet<NaiveDate> = (-1..=DAYS_AHEAD).map(|d| today + Duration::days(d)).collect();
        state.telemetry.partitions.ensure(state.db.get_postgres_connection_pool(), &days).await?;
    }
    if let Some(days) = state.config.telemetry.retention_days {
        let cutoff = Utc::now() - Duration::days(i64::from(days));
        let what = super::store::retain(&state.db, &state.telemetry.partitions, cutoff).await?;
        tracing::info!(retention_days = days, %cutoff, result = %what, "telemetry retention applied");
    }
    Ok(())
}

pub fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.telemetry.maintenance_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&state).await {
                tracing::warn!(error = %e, "telemetry maintenance failed; will retry at the next round");
            }
        }
    })
}
