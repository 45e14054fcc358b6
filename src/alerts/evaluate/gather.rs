//! Reading what a run evaluates: the readings of its evaluations, per (device, metric) series in
//! time order, and which series each (rule, device) steps through. Read before the run's write
//! transaction: each job committed with its readings, which never change.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use super::{EvaluateReadings, Pair};
use crate::{
    alerts::{
        cache::{GrowerRules, rules_of},
        entity::rule,
    },
    ids::{DeviceId, RuleId},
    state::AppState,
};

/// The readings of a batch of evaluations, per (device, metric) in time order, and which of
/// them each (rule, device) steps through; with the rules and the earliest acceptance of each
/// device's batches.
#[derive(Default)]
pub(super) struct Gathered {
    /// The (device, metric) of each series.
    pub keys: Vec<(DeviceId, String)>,
    pub series: Vec<Vec<(DateTime<Utc>, f64)>>,
    /// Each (rule, device) and the index of the series it steps through.
    pub pairs: BTreeMap<Pair, usize>,
    pub models: HashMap<RuleId, rule::Model>,
    /// When the earliest batch behind each device's readings was accepted (ms since the epoch).
    pub accepted: HashMap<DeviceId, i64>,
}

/// Per device of a run: its grower, the metrics and the time span (µs) of its batches.
type Span = (Uuid, Vec<String>, i64, i64);

/// Reads the readings of `batch` (consecutive batches of a device become one read).
pub(super) async fn gather(state: &AppState, batch: &[EvaluateReadings]) -> Result<Gathered, DbErr> {
    let mut spans: BTreeMap<DeviceId, Span> = BTreeMap::new();
    let mut g = Gathered::default();
    for job in batch {
        for d in job.devices.iter().copied().map(DeviceId::from) {
            let span = spans.entry(d).or_insert_with(|| (job.grower_id, Vec::new(), job.from_us, job.to_us));
            for m in &job.metrics {
                if !span.1.contains(m) {
                    span.1.push(m.clone());
                }
            }
            span.2 = Ord::min(span.2, job.from_us);
            span.3 = Ord::max(span.3, job.to_us);
            g.accepted_at(d, job.accepted_at_ms);
        }
    }
    for (device, (grower, metrics, from_us, to_us)) in spans {
        let grower_rules = rules_of(&state.db, &state.alerts, grower).await?;
        if !grower_rules.rules.iter().any(|r| metrics.contains(&r.metric) && watches_device(r, device)) {
            continue;
        }
        let from = DateTime::from_timestamp_micros(from_us).unwrap_or_default();
        let to = DateTime::from_timestamp_micros(to_us).unwrap_or_default();
        let readings =
            crate::telemetry::store::readings_between(&state.db, &[device.into()], &metrics, from, to).await?;
        g.add_device(&grower_rules, device, readings.into_iter().map(|r| (r.metric, r.ts, r.value)));
    }
    Ok(g.finish())
}

/// Whether rule `r` looks at `device` (its own device, or every device of its grower).
fn watches_device(r: &rule::Model, device: DeviceId) -> bool {
    r.device_id.is_none_or(|d| d == Uuid::from(device))
}

impl Gathered {
    /// The batch behind `device`'s readings was accepted at `ms`: the earliest one counts.
    fn accepted_at(&mut self, device: DeviceId, ms: i64) {
        let at = self.accepted.entry(device).or_insert(ms);
        *at = Ord::min(*at, ms);
    }

    /// Adds one device's readings (in any order) of the metrics `rules` watch on it: a series
    /// per (device, metric), stepped through by each (rule, device) that watches it.
    fn add_device(
        &mut self,
        rules: &GrowerRules,
        device: DeviceId,
        readings: impl IntoIterator<Item = (String, DateTime<Utc>, f64)>,
    ) {
        // metric -> index in `series` for this device (`None`: no rule watches it).
        let mut index: HashMap<String, Option<usize>> = HashMap::new();
        for (metric, ts, value) in readings {
            let at = match index.get(&metric) {
                Some(at) => *at,
                None => {
                    let at = self.open_series(rules, device, &metric);
                    index.insert(metric, at);
                    at
                }
            };
            if let Some(at) = at {
                self.series[at].push((ts, value));
            }
        }
    }

    /// A new series for (`device`, `metric`), stepped through by each rule that watches it;
    /// its index, or `None` when no rule does.
    fn open_series(&mut self, rules: &GrowerRules, device: DeviceId, metric: &str) -> Option<usize> {
        let watching: Vec<&rule::Model> =
            rules.rules.iter().filter(|r| r.metric == metric && watches_device(r, device)).collect();
        if watching.is_empty() {
            return None;
        }
        self.series.push(Vec::new());
        let at = self.series.len() - 1;
        for rule in watching {
            self.pairs.insert((rule.id.into(), device), at);
            self.models.entry(rule.id.into()).or_insert_with(|| rule.clone());
        }
        self.keys.push((device, metric.to_string()));
        Some(at)
    }

    /// Puts each series in time order, one reading per time (the first of equal ones).
    fn finish(mut self) -> Self {
        for readings in &mut self.series {
            readings.sort_by_key(|r| r.0);
            readings.dedup_by_key(|r| r.0);
        }
        self
    }
}
