//! Telemetry maintenance: creates the next days' partitions ahead of time (PostgreSQL) and
//! applies `TELEMETRY_RETENTION_DAYS`. A periodic job on the queue, run soon after the first
//! start and then every `TELEMETRY_MAINTENANCE_SECS`, once across instances; every step is
//! idempotent all the same.

use std::collections::HashSet;

use crate::state::AppState;
use chrono::{Duration, NaiveDate, Utc};

/// Days ahead of today that always have a partition.
const DAYS_AHEAD: i64 = 3;

/// One round of maintenance.
pub async fn run_once(state: &AppState) -> anyhow::Result<()> {
    let today = Utc::now().date_naive();
    let days: HashSet<NaiveDate> = (-1..=DAYS_AHEAD).map(|d| today + Duration::days(d)).collect();
    state.telemetry.partitions.ensure(&state.db, &days).await?;
    if let Some(days) = state.config.telemetry.retention_days {
        let cutoff = Utc::now() - Duration::days(i64::from(days));
        let what = super::store::retain(&state.db, &state.telemetry.partitions, cutoff).await?;
        tracing::info!(retention_days = days, %cutoff, result = %what, "telemetry retention applied");
    }
    Ok(())
}

/// The periodic job (every `TELEMETRY_MAINTENANCE_SECS`, once across instances).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TelemetryMaintenance {}

impl crate::jobs::BackgroundJob for TelemetryMaintenance {
    const NAME: &'static str = "telemetry_maintenance";
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

    async fn run(&self, state: &AppState, _run: crate::jobs::Run) -> anyhow::Result<()> {
        run_once(state).await
    }
}
