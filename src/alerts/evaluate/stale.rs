//! `check_stale`, periodic: a stale rule fires for each of its devices without a reading of
//! its metric for `forSeconds` (by the clock). An open stale alert stays as it is: the check
//! repeating is not news; the next reading clears it (in `evaluate_readings`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Pair,
    apply::{Subject, apply, open_alerts},
    series::lock_series,
};
use crate::{
    alerts::{
        delivery,
        engine::{self, Outcome},
        entity::{Kind, rule},
    },
    greenhouse::entity::device,
    ids::DeviceId,
    jobs::{BackgroundJob, Run},
    state::AppState,
};

/// The periodic stale-device check.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckStale {}

impl BackgroundJob for CheckStale {
    const NAME: &'static str = "check_stale";
    const TIMEOUT: Duration = Duration::from_secs(120);

    async fn run(&self, state: &AppState, _run: Run) -> anyhow::Result<()> {
        let rules = rule::Entity::find()
            .filter(rule::Column::Kind.eq(Kind::Stale))
            .filter(rule::Column::Enabled.eq(true))
            .filter(rule::Column::DeletedAt.is_null())
            .all(&state.db)
            .await?;
        for model in rules {
            check_rule(state, &model).await?;
        }
        Ok(())
    }
}

/// Checks one stale rule against each of its devices.
async fn check_rule(state: &AppState, model: &rule::Model) -> anyhow::Result<()> {
    let rule = engine::Rule::from(model);
    let mut devices = device::Entity::find()
        .select_only()
        .columns([device::Column::Id, device::Column::CreatedAt])
        .filter(device::Column::GrowerId.eq(model.grower_id))
        .filter(device::Column::DeletedAt.is_null());
    if let Some(d) = model.device_id {
        devices = devices.filter(device::Column::Id.eq(d));
    }
    let devices: Vec<(Uuid, DateTime<Utc>)> = devices.into_tuple().all(&state.db).await?;
    if devices.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = devices.iter().map(|d| d.0).collect();
    let latest = crate::telemetry::store::latest_of_metric(&state.db, &ids, &model.metric).await?;
    let now = state.clock.now();
    // Watching starts when the rule (or the device) appeared, so a new rule does not fire at once
    // for devices that never reported.
    let stale: Vec<(DeviceId, DateTime<Utc>)> = devices
        .iter()
        .map(|(id, created)| ((*id).into(), latest.get(id).copied().unwrap_or(Ord::max(*created, model.created_at))))
        .filter(|(_, last)| matches!(engine::stale(&rule, *last, now), Outcome::Fire { .. }))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let txn = state.db.begin_write().await?;
    let keys: Vec<Pair> = stale.iter().map(|(d, _)| (model.id.into(), *d)).collect();
    let series: Vec<(DeviceId, String)> = stale.iter().map(|(d, _)| (*d, model.metric.clone())).collect();
    let positions = lock_series(&txn, &series, now).await?;
    let open = open_alerts(&txn, &keys).await?;
    let mut changes = Vec::new();
    for ((device_id, last), position) in stale.into_iter().zip(positions) {
        // A reading evaluated since the query above counts too.
        let last = position.last.map_or(last, |(t, _)| Ord::max(t, last));
        let outcome = engine::stale(&rule, last, now);
        if matches!(outcome, Outcome::Fire { .. }) && !open.contains_key(&(model.id.into(), device_id)) {
            let subject = Subject { rule: model, judge: &rule, device_id };
            apply(&txn, subject, None, vec![outcome], now, &mut changes).await?;
        }
    }
    delivery::notify(&txn, state, model.grower_id, &changes, None).await?;
    txn.commit().await?;
    if !changes.is_empty() {
        state.jobs.wake();
    }
    Ok(())
}
