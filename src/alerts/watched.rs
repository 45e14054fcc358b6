//! What ingestion asks alerting: which readings of a batch some enabled rule watches. Those
//! become one `evaluate_readings` job per grower, committed with the batch. Batches nothing
//! watches cost one cache lookup.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{cache::RulesByGrower, evaluate::EvaluateReadings};
use crate::{greenhouse::entity::device, jobs::NewJob, state::AppState, telemetry::store::Reading};

/// The evaluation jobs a batch about to be stored needs: per grower, one `evaluate_readings`
/// job naming the devices, metrics and time range of the readings its enabled rules watch,
/// to commit with the batch. Empty (and no database work once cached) when no rule looks at it.
pub async fn watched(state: &AppState, readings: &[Reading], accepted_at: DateTime<Utc>) -> Result<Vec<NewJob>, DbErr> {
    let alerts = &state.alerts;
    let devices: HashSet<Uuid> = readings.iter().map(|r| r.device_id).collect();
    let unknown: Vec<Uuid> = devices.iter().copied().filter(|d| !alerts.device_growers.contains_key(d)).collect();
    if !unknown.is_empty() {
        let rows: Vec<(Uuid, Uuid)> = device::Entity::find()
            .select_only()
            .columns([device::Column::Id, device::Column::GrowerId])
            .filter(device::Column::Id.is_in(unknown))
            .into_tuple()
            .all(&state.db)
            .await?;
        for (d, g) in rows {
            alerts.device_growers.insert(d, g);
        }
    }
    let mut watches = RulesByGrower::default();
    let mut per_grower: HashMap<Uuid, Span<'_>> = HashMap::new();
    for r in readings {
        let Some(grower) = alerts.device_growers.get(&r.device_id) else { continue };
        let watch = watches.of(&state.db, alerts, grower).await?;
        if !watch.watches(r.device_id, &r.metric) {
            continue;
        }
        let ts = r.ts.timestamp_micros();
        let e = per_grower.entry(grower).or_insert_with(|| (HashSet::new(), HashSet::new(), ts, ts));
        e.0.insert(r.device_id);
        e.1.insert(r.metric.as_str());
        e.2 = e.2.min(ts);
        e.3 = e.3.max(ts);
    }
    let accepted_at_ms = accepted_at.timestamp_millis();
    per_grower
        .into_iter()
        .map(|(grower_id, (devices, metrics, from_us, to_us))| {
            let job = EvaluateReadings {
                grower_id,
                devices: devices.into_iter().collect(),
                metrics: metrics.into_iter().map(str::to_owned).collect(),
                from_us,
                to_us,
                accepted_at_ms,
            };
            NewJob::of(&job, accepted_at)
        })
        .collect()
}

/// The watched part of a batch for one grower: devices, metrics, first and last time (µs).
type Span<'a> = (HashSet<Uuid>, HashSet<&'a str>, i64, i64);
