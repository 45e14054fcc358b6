//! Ingestion, the one path of HTTP and MQTT: validated readings are stored with the batch's
//! alert evaluation jobs in one transaction, then the new ones are published, counted, and
//! their devices marked as seen.
//!
//! Who may send what (HTTP; the broker checks MQTT devices): a device only its own readings; a
//! person only readings of devices in growers they may write to, checked for the whole batch
//! at once. A refused batch stores nothing.

use std::collections::HashSet;

use chrono::Utc;
use sea_orm::{ColumnTrait, DbErr};
use uuid::Uuid;

use super::{
    TelemetryError,
    batch::{self, Window},
    extract::Caller,
    store::{self, Reading},
    types::{BatchOut, ItemIn},
};
use crate::{
    auth::AuthUser,
    greenhouse::{access, devices::live_growers, entity::device},
    ids::GrowerId,
    metrics::{RejectLabels, SourceLabels},
    state::AppState,
};

/// Validates a batch posted over HTTP by `caller`, checks that the caller may send every
/// reading in it, and stores it.
pub async fn accept(state: &AppState, caller: &Caller, items: Vec<ItemIn>) -> Result<BatchOut, TelemetryError> {
    let own = match caller {
        Caller::Device(d) => Some(d.device_id.0),
        Caller::User(_) => None,
    };
    let readings = batch::validate(items, own, Utc::now(), Window::of(&state.config.telemetry))?;
    match caller {
        Caller::Device(d) => {
            if let Some(index) = readings.iter().position(|r| r.device_id != d.device_id.0) {
                return Err(TelemetryError::NotOwnReading { index });
            }
        }
        Caller::User(u) => check_user_may_write(state, u, &readings).await?,
    }
    Ok(ingest(state, "http", readings).await?)
}

/// Fails naming (by first index) each device of `readings` that `user` may not write to: one
/// that does not exist or is deleted, or is in a grower they may not write to. One query finds
/// the devices' growers, one which of those the user may write to; a failure of either is that
/// failure (503 when the database is down), never a refusal.
async fn check_user_may_write(state: &AppState, user: &AuthUser, readings: &[Reading]) -> Result<(), TelemetryError> {
    access::require_greenhouses(user)?;
    let ids: HashSet<Uuid> = readings.iter().map(|r| r.device_id).collect();
    let growers = live_growers(&state.db, device::Column::Id.is_in(ids)).await?;
    let wanted: HashSet<GrowerId> = growers.values().copied().map(GrowerId).collect();
    let writable = access::writable_growers(&state.db, user, &wanted).await?;
    let mut refused = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in readings.iter().enumerate() {
        let ok = growers.get(&r.device_id).is_some_and(|g| writable.contains(&GrowerId(*g)));
        if !ok && seen.insert(r.device_id) {
            refused.push(i);
        }
    }
    if refused.is_empty() { Ok(()) } else { Err(TelemetryError::NotWritable { items: refused }) }
}

/// Stores validated readings from `source` (`http`, `mqtt`); what was new and what was a
/// duplicate. The batch's rule evaluation jobs commit with it.
pub async fn ingest(state: &AppState, source: &'static str, mut readings: Vec<Reading>) -> Result<BatchOut, DbErr> {
    let total = readings.len() as u64;
    // Readings some alert rule watches are evaluated by a job that commits with the batch.
    let jobs = crate::alerts::watched(state, &readings, Utc::now()).await?;
    let new = store::insert(&state.db, &state.telemetry.partitions, &mut readings, &jobs).await?;
    if !jobs.is_empty() {
        state.jobs.wake();
    }
    let fresh: Vec<Reading> = readings.iter().zip(&new).filter(|(_, new)| **new).map(|(r, _)| r.clone()).collect();
    let accepted = fresh.len() as u64;
    // A subscription made while the batch was stored read its snapshot before this commit, so
    // it must get these readings: publishing after the commit reaches it (paths without
    // subscribers drop them at once).
    state.realtime.publish_readings(&fresh);
    let duplicates = total - accepted;
    state.metrics.telemetry_ingested.get_or_create(&SourceLabels { source }).inc_by(accepted);
    state.metrics.telemetry_duplicates.get_or_create(&SourceLabels { source }).inc_by(duplicates);
    let devices: Vec<Uuid> = readings.iter().map(|r| r.device_id).collect::<HashSet<_>>().into_iter().collect();
    state.greenhouse.seen(&state.db, &devices).await;
    Ok(BatchOut { accepted, duplicates })
}

/// Counts a refused batch or message.
pub fn rejected(state: &AppState, source: &'static str, reason: &'static str) {
    state.metrics.telemetry_rejected.get_or_create(&RejectLabels { source, reason }).inc();
}
