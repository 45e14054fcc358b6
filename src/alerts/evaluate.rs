//! The evaluation jobs: `evaluate_readings` (enqueued by ingestion; a run also takes on the
//! evaluations queued meanwhile) and `check_stale` (periodic). Both change alerts the same way,
//! in one transaction that holds the `alert_series_states` rows of the (device, metric) series
//! it touches: evaluations of the same readings are serialised across workers and instances,
//! state and alert changes commit together with their delivery jobs, and a retried run skips
//! readings it already saw.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Change,
    engine::{self, Kind, Outcome},
    entity::{AlertStatus, alert, rule, rule_state, series_state},
};
use crate::{greenhouse::entity::device, jobs::BackgroundJob, state::AppState};

/// A (rule, device).
type Pair = (Uuid, Uuid);

/// The readings of one accepted batch that a grower's rules watch, by reference: the devices
/// and metrics, and the time range they span. The readings themselves are read back from
/// `sensor_readings` (the batch committed with this job), so a job row stays small whatever
/// the batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateReadings {
    pub grower_id: Uuid,
    pub devices: Vec<Uuid>,
    pub metrics: Vec<String>,
    /// First and last reading time, in microseconds since the epoch.
    pub from_us: i64,
    pub to_us: i64,
    /// When the batch was accepted (ms since the epoch), for `alert_event_latency_seconds`.
    pub accepted_at_ms: i64,
}

impl BackgroundJob for EvaluateReadings {
    const NAME: &'static str = "evaluate_readings";
    const PRIORITY: i16 = 10;
    const MAX_ATTEMPTS: i32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Evaluations queued meanwhile (any grower's) are done in this run too: one transaction and
    /// one state write per (rule, device) for all of them, instead of one each. The jobs taken
    /// are removed in that transaction, so they are done exactly when it commits.
    ///
    /// The readings are read before the write transaction starts (on SQLite, before this run
    /// queues for the write lock): each job committed with its readings, which never change.
    /// Whatever another run evaluates meanwhile is skipped here, because the transaction reads
    /// each series' position (the last reading evaluated) under its lock.
    async fn run(&self, state: &AppState, _run: crate::jobs::Run) -> anyhow::Result<()> {
        let now = state.clock.now();
        let mut batch = vec![self.clone()];
        let queued = crate::jobs::queue::due(&state.db, Self::NAME, now, TAKE_QUEUED).await?;
        let candidates = parse_taken(queued, &mut batch);
        let gathered = gather(state, &batch).await?;
        let txn = state.db.begin_write().await?;
        let ids: Vec<Uuid> = candidates.iter().map(|t| t.0).collect();
        let removed = crate::jobs::queue::remove_taken(&txn, &ids).await?;
        let changed = evaluate(state, &txn, gathered, now).await?;
        txn.commit().await?;
        let taken: Vec<(Uuid, DateTime<Utc>)> = candidates.into_iter().filter(|t| removed.contains(&t.0)).collect();
        finished(state, &taken, now);
        if changed {
            state.jobs.wake();
        }
        Ok(())
    }
}

/// How many queued evaluations one run takes on besides its own.
const TAKE_QUEUED: u64 = 255;

/// Keeps the jobs whose arguments parse (adding them to `batch`) as (id, due time). A payload
/// that does not parse is left to fail as its own job (and be dead-lettered).
fn parse_taken(jobs: Vec<crate::jobs::entity::Model>, batch: &mut Vec<EvaluateReadings>) -> Vec<(Uuid, DateTime<Utc>)> {
    let mut taken = Vec::new();
    for job in jobs {
        if let Ok(args) = serde_json::from_value::<EvaluateReadings>(job.payload) {
            taken.push((job.id, job.run_at));
            batch.push(args);
        }
    }
    taken
}

/// Counts the jobs a run took on as finished.
fn finished(state: &AppState, taken: &[(Uuid, DateTime<Utc>)], now: DateTime<Utc>) {
    let labels = crate::metrics::JobLabels { job: EvaluateReadings::NAME };
    for (_, run_at) in taken {
        let waited = Ord::max((now - *run_at).num_microseconds().unwrap_or(0), 0) as f64 / 1e6;
        state.metrics.job_wait.get_or_create(&labels).observe(waited);
    }
    let outcome = crate::metrics::JobOutcome { job: EvaluateReadings::NAME, outcome: "success" };
    state.metrics.jobs_finished.get_or_create(&outcome).inc_by(taken.len() as u64);
}

/// The readings of a batch of evaluations, per (device, metric) in time order, and which of
/// them each (rule, device) steps through; with the rules and the earliest acceptance of each
/// device's batches.
#[derive(Default)]
struct Gathered {
    /// The (device, metric) of each series.
    keys: Vec<(Uuid, String)>,
    series: Vec<Vec<(DateTime<Utc>, f64)>>,
    pairs: BTreeMap<Pair, usize>,
    models: HashMap<Uuid, rule::Model>,
    accepted: HashMap<Uuid, i64>,
}

async fn gather(state: &AppState, batch: &[EvaluateReadings]) -> Result<Gathered, DbErr> {
    // Per device: its grower, the metrics and the time span of its batches (consecutive
    // batches of a device become one read).
    let mut spans: BTreeMap<Uuid, (Uuid, Vec<String>, i64, i64)> = BTreeMap::new();
    let mut g = Gathered::default();
    for job in batch {
        for d in &job.devices {
            let span = spans.entry(*d).or_insert_with(|| (job.grower_id, Vec::new(), job.from_us, job.to_us));
            for m in &job.metrics {
                if !span.1.contains(m) {
                    span.1.push(m.clone());
                }
            }
            span.2 = Ord::min(span.2, job.from_us);
            span.3 = Ord::max(span.3, job.to_us);
            g.accepted_at(*d, job.accepted_at_ms);
        }
    }
    for (device, (grower, metrics, from_us, to_us)) in spans {
        let grower_rules = super::rules_of(&state.db, &state.alerts, grower).await?;
        if !grower_rules.rules.iter().any(|r| metrics.contains(&r.metric) && r.device_id.is_none_or(|d| d == device)) {
            continue;
        }
        let from = DateTime::from_timestamp_micros(from_us).unwrap_or_default();
        let to = DateTime::from_timestamp_micros(to_us).unwrap_or_default();
        let readings = crate::telemetry::store::readings_between(&state.db, &[device], &metrics, from, to).await?;
        g.add_device(&grower_rules, device, readings.into_iter().map(|r| (r.metric, r.ts, r.value)));
    }
    Ok(g.finish())
}

impl Gathered {
    /// The batch behind `device`'s readings was accepted at `ms`: the earliest one counts.
    fn accepted_at(&mut self, device: Uuid, ms: i64) {
        let at = self.accepted.entry(device).or_insert(ms);
        *at = Ord::min(*at, ms);
    }

    /// Adds one device's readings (in any order) of the metrics `rules` watch on it: a series
    /// per (device, metric), stepped through by each (rule, device) that watches it.
    fn add_device(
        &mut self,
        rules: &super::GrowerRules,
        device: Uuid,
        readings: impl IntoIterator<Item = (String, DateTime<Utc>, f64)>,
    ) {
        // metric -> index in `series` for this device (`None`: no rule watches it).
        let mut index: HashMap<String, Option<usize>> = HashMap::new();
        for (metric, ts, value) in readings {
            let at = match index.get(&metric) {
                Some(at) => *at,
                None => {
                    let watching: Vec<&rule::Model> = rules
                        .rules
                        .iter()
                        .filter(|r| r.metric == metric && r.device_id.is_none_or(|d| d == device))
                        .collect();
                    let at = (!watching.is_empty()).then(|| {
                        self.series.push(Vec::new());
                        // Each rule that watches this (device, metric) steps through it.
                        for rule in watching {
                            self.pairs.insert((rule.id, device), self.series.len() - 1);
                            self.models.entry(rule.id).or_insert_with(|| rule.clone());
                        }
                        self.keys.push((device, metric.clone()));
                        self.series.len() - 1
                    });
                    index.insert(metric, at);
                    at
                }
            };
            if let Some(at) = at {
                self.series[at].push((ts, value));
            }
        }
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

/// Steps every (rule, device) through its readings and applies the outcomes, inside `txn`;
/// whether any alert changed (wake the workers for the deliveries once committed).
async fn evaluate(state: &AppState, txn: &DatabaseTransaction, g: Gathered, now: DateTime<Utc>) -> Result<bool, DbErr> {
    // The series rows first: locking them serialises every evaluation of the same readings.
    let mut positions = lock_series(txn, &g.keys, now).await?;
    let judges: HashMap<Uuid, engine::Rule> = g.models.iter().map(|(id, m)| (*id, engine::Rule::from(m))).collect();
    let stateful: Vec<Pair> =
        g.pairs.keys().filter(|(r, _)| judges.get(r).is_some_and(engine::Rule::keeps_state)).copied().collect();
    let mut states = lock_states(txn, &stateful, now).await?;
    let loaded = states.clone();
    let keys: Vec<Pair> = g.pairs.keys().copied().collect();
    let mut open = open_alerts(txn, &keys).await?;
    // Per grower, the alert changes made.
    let mut changes: BTreeMap<Uuid, Vec<(Change, alert::Model)>> = BTreeMap::new();
    // Per series, once: the extremes of its new readings.
    let mut extremes: Vec<Option<Option<engine::Extremes>>> = vec![None; g.series.len()];
    for ((rule_id, device_id), at) in &g.pairs {
        let Some(rule) = judges.get(rule_id) else { continue };
        let model = &g.models[rule_id];
        let position = positions[*at];
        let current = open.remove(&(*rule_id, *device_id));
        // A rule without state of its own and without an open alert only matters if it fires,
        // which the extremes of the readings tell (most rules, most of the time, do not).
        if current.is_none() && !rule.keeps_state() {
            let e = extremes[*at].get_or_insert_with(|| {
                engine::Extremes::of(
                    position.last,
                    g.series[*at].iter().copied().filter(|(ts, _)| position.admits(*ts)),
                )
            });
            if !e.as_ref().is_some_and(|e| rule.may_fire(e)) {
                continue;
            }
        }
        let mut previous = position.last;
        let mut scratch = engine::State::default();
        let st = if rule.keeps_state() { states.entry((*rule_id, *device_id)).or_default() } else { &mut scratch };
        let outcomes: Vec<Outcome> = g.series[*at]
            .iter()
            .filter(|(ts, _)| position.admits(*ts))
            .map(|&(ts, v)| {
                let outcome = engine::step(rule, st, previous, ts, v);
                previous = Some((ts, v));
                outcome
            })
            .collect();
        // Nothing fired and no alert is open: nothing to apply (the common case, and `apply`'s
        // future, which holds its statements', is large to set up for each pair).
        if current.is_none() && !outcomes.iter().any(|o| matches!(o, Outcome::Fire { .. })) {
            continue;
        }
        let made = changes.entry(model.grower_id).or_default();
        Box::pin(apply(txn, model, rule, *device_id, current, outcomes, now, made)).await?;
    }
    let mut moved = Vec::new();
    for (at, readings) in g.series.iter().enumerate() {
        if let Some(&(ts, v)) = readings.last()
            && positions[at].admits(ts)
        {
            positions[at].last = Some((ts, v));
            moved.push(at);
        }
    }
    save_series(txn, &g.keys, &positions, &moved, now).await?;
    states.retain(|k, s| loaded.get(k) != Some(s));
    save_states(txn, &states, now).await?;
    for (grower_id, made) in &changes {
        // The batch behind the earliest of these changes, for `alert_event_latency_seconds`.
        let first = made.iter().filter_map(|(_, a)| g.accepted.get(&a.device_id)).min();
        let accepted_at = first.and_then(|ms| DateTime::from_timestamp_millis(*ms));
        super::delivery::notify(txn, state, *grower_id, made, accepted_at).await?;
    }
    Ok(changes.values().any(|c| !c.is_empty()))
}

/// The periodic stale-device check.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckStale {}

impl BackgroundJob for CheckStale {
    const NAME: &'static str = "check_stale";
    const TIMEOUT: Duration = Duration::from_secs(120);

    async fn run(&self, state: &AppState, _run: crate::jobs::Run) -> anyhow::Result<()> {
        let rules = rule::Entity::find()
            .filter(rule::Column::Kind.eq(Kind::Stale))
            .filter(rule::Column::Enabled.eq(true))
            .filter(rule::Column::DeletedAt.is_null())
            .all(&state.db)
            .await?;
        for model in rules {
            check_stale_rule(state, &model).await?;
        }
        Ok(())
    }
}

async fn check_stale_rule(state: &AppState, model: &rule::Model) -> anyhow::Result<()> {
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
    let stale: Vec<(Uuid, DateTime<Utc>)> = devices
        .iter()
        .map(|(id, created)| (*id, latest.get(id).copied().unwrap_or(Ord::max(*created, model.created_at))))
        .filter(|(_, last)| matches!(engine::stale(&rule, *last, now), Outcome::Fire { .. }))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let txn = state.db.begin_write().await?;
    let keys: Vec<(Uuid, Uuid)> = stale.iter().map(|(d, _)| (model.id, *d)).collect();
    let series: Vec<(Uuid, String)> = stale.iter().map(|(d, _)| (*d, model.metric.clone())).collect();
    let positions = lock_series(&txn, &series, now).await?;
    let mut open = open_alerts(&txn, &keys).await?;
    let mut changes = Vec::new();
    for ((device_id, last), position) in stale.into_iter().zip(positions) {
        // A reading evaluated since the query above counts too.
        let last = position.last.map_or(last, |(t, _)| Ord::max(t, last));
        let outcome = engine::stale(&rule, last, now);
        // An open stale alert stays as it is: the check repeating is not news.
        if matches!(outcome, Outcome::Fire { .. }) && !open.contains_key(&(model.id, device_id)) {
            let current = open.remove(&(model.id, device_id));
            apply(&txn, model, &rule, device_id, current, vec![outcome], now, &mut changes).await?;
        }
    }
    super::delivery::notify(&txn, state, model.grower_id, &changes, None).await?;
    txn.commit().await?;
    if !changes.is_empty() {
        state.jobs.wake();
    }
    Ok(())
}

/// Makes sure each (device, metric) has a series row and locks them all (PostgreSQL
/// `FOR UPDATE`, in key order; SQLite holds the write lock already); their positions, in the
/// order of `keys`.
async fn lock_series(
    txn: &DatabaseTransaction,
    keys: &[(Uuid, String)],
    now: DateTime<Utc>,
) -> Result<Vec<engine::Series>, DbErr> {
    // Locked in key order, so two evaluations of overlapping series cannot deadlock.
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let mut found = select_series(txn, &sorted).await?;
    let missing: Vec<(Uuid, String)> = sorted.into_iter().filter(|k| !found.contains_key(k)).collect();
    if !missing.is_empty() {
        for chunk in missing.chunks(500) {
            let rows = chunk.iter().map(|(d, m)| series_state::ActiveModel {
                device_id: Set(*d),
                metric: Set(m.clone()),
                last_ts: Set(None),
                last_value: Set(None),
                updated_at: Set(now),
            });
            series_state::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([series_state::Column::DeviceId, series_state::Column::Metric])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        found.extend(select_series(txn, &missing).await?);
    }
    Ok(keys.iter().map(|k| found.get(k).copied().unwrap_or_default()).collect())
}

async fn select_series(
    txn: &DatabaseTransaction,
    keys: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), engine::Series>, DbErr> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(500) {
        let wanted: std::collections::HashSet<&(Uuid, String)> = chunk.iter().collect();
        let mut devices: Vec<Uuid> = chunk.iter().map(|k| k.0).collect();
        devices.sort_unstable();
        devices.dedup();
        let mut metrics: Vec<&str> = chunk.iter().map(|k| k.1.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        let query = series_state::Entity::find()
            .filter(series_state::Column::DeviceId.is_in(devices))
            .filter(series_state::Column::Metric.is_in(metrics))
            .order_by_asc(series_state::Column::DeviceId)
            .order_by_asc(series_state::Column::Metric);
        for s in crate::db::for_update(query).all(txn).await? {
            let key = (s.device_id, s.metric);
            if wanted.contains(&key) {
                out.insert(key, engine::Series { last: s.last_ts.zip(s.last_value) });
            }
        }
    }
    Ok(out)
}

/// Writes the series positions at `moved` (indexes into `keys` and `positions`).
async fn save_series(
    txn: &DatabaseTransaction,
    keys: &[(Uuid, String)],
    positions: &[engine::Series],
    moved: &[usize],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in moved.chunks(500) {
        let rows = chunk.iter().map(|&at| series_state::ActiveModel {
            device_id: Set(keys[at].0),
            metric: Set(keys[at].1.clone()),
            last_ts: Set(positions[at].last.map(|l| l.0)),
            last_value: Set(positions[at].last.map(|l| l.1)),
            updated_at: Set(now),
        });
        series_state::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([series_state::Column::DeviceId, series_state::Column::Metric])
                    .update_columns([
                        series_state::Column::LastTs,
                        series_state::Column::LastValue,
                        series_state::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Makes sure each pair has a state row and locks them all (PostgreSQL `FOR UPDATE`; SQLite
/// holds the write lock already), returning the states. Rows are locked as they are found;
/// only pairs seen for the first time are inserted (then locked).
async fn lock_states(
    txn: &DatabaseTransaction,
    keys: &[(Uuid, Uuid)],
    now: DateTime<Utc>,
) -> Result<HashMap<(Uuid, Uuid), engine::State>, DbErr> {
    let mut out = select_states(txn, keys).await?;
    let missing: Vec<Pair> = keys.iter().filter(|k| !out.contains_key(k)).copied().collect();
    if missing.is_empty() {
        return Ok(out);
    }
    for chunk in missing.chunks(500) {
        let rows = chunk.iter().map(|(r, d)| rule_state::ActiveModel {
            rule_id: Set(*r),
            device_id: Set(*d),
            breach_since: Set(None),
            mean: Set(0.0),
            variance: Set(0.0),
            samples: Set(0),
            updated_at: Set(now),
        });
        rule_state::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([rule_state::Column::RuleId, rule_state::Column::DeviceId]).do_nothing().to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    out.extend(select_states(txn, &missing).await?);
    Ok(out)
}

/// The state rows of `keys` that exist, locked in key order (so two evaluations of
/// overlapping pairs cannot deadlock).
async fn select_states(
    txn: &DatabaseTransaction,
    keys: &[(Uuid, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), engine::State>, DbErr> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(500) {
        let wanted: std::collections::HashSet<&Pair> = chunk.iter().collect();
        let query = rule_state::Entity::find()
            .filter(pair_condition(chunk, rule_state::Column::RuleId, rule_state::Column::DeviceId))
            .order_by_asc(rule_state::Column::RuleId)
            .order_by_asc(rule_state::Column::DeviceId);
        for s in crate::db::for_update(query)
            .all(txn)
            .await?
            .into_iter()
            .filter(|s| wanted.contains(&(s.rule_id, s.device_id)))
        {
            out.insert(
                (s.rule_id, s.device_id),
                engine::State { breach_since: s.breach_since, mean: s.mean, variance: s.variance, samples: s.samples },
            );
        }
    }
    Ok(out)
}

/// `a IN (…) AND b IN (…)`: a superset of the pairs (the caller keeps the pairs it asked for),
/// and one short statement whatever the number of pairs.
fn pair_condition(keys: &[(Uuid, Uuid)], a: impl ColumnTrait, b: impl ColumnTrait) -> Condition {
    let mut xs: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let mut ys: Vec<Uuid> = keys.iter().map(|k| k.1).collect();
    xs.sort_unstable();
    xs.dedup();
    ys.sort_unstable();
    ys.dedup();
    Condition::all().add(a.is_in(xs)).add(b.is_in(ys))
}

async fn save_states(
    txn: &DatabaseTransaction,
    states: &HashMap<(Uuid, Uuid), engine::State>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let all: Vec<_> = states.iter().collect();
    for chunk in all.chunks(500) {
        let rows = chunk.iter().map(|((r, d), s)| rule_state::ActiveModel {
            rule_id: Set(*r),
            device_id: Set(*d),
            breach_since: Set(s.breach_since),
            mean: Set(s.mean),
            variance: Set(s.variance),
            samples: Set(s.samples),
            updated_at: Set(now),
        });
        rule_state::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([rule_state::Column::RuleId, rule_state::Column::DeviceId])
                    .update_columns([
                        rule_state::Column::BreachSince,
                        rule_state::Column::Mean,
                        rule_state::Column::Variance,
                        rule_state::Column::Samples,
                        rule_state::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The open alert of each pair.
async fn open_alerts(
    txn: &DatabaseTransaction,
    keys: &[(Uuid, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), alert::Model>, DbErr> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(500) {
        let wanted: std::collections::HashSet<&Pair> = chunk.iter().collect();
        let rows = alert::Entity::find()
            .filter(alert::Column::Status.ne(AlertStatus::Resolved))
            .filter(pair_condition(chunk, alert::Column::RuleId, alert::Column::DeviceId))
            .all(txn)
            .await?;
        out.extend(
            rows.into_iter()
                .filter(|a| wanted.contains(&(a.rule_id, a.device_id)))
                .map(|a| ((a.rule_id, a.device_id), a)),
        );
    }
    Ok(out)
}

/// Applies a pair's outcomes, in order, to its alert: the first firing opens one, repeats while
/// it is open are folded into one update (value, message, count, last seen), a clear resolves
/// it when the rule auto-resolves. Pushes each change made. Only the messages that are stored
/// are written.
#[allow(clippy::too_many_arguments)]
async fn apply(
    txn: &DatabaseTransaction,
    rule: &rule::Model,
    judge: &engine::Rule,
    device_id: Uuid,
    mut open: Option<alert::Model>,
    outcomes: Vec<Outcome>,
    now: DateTime<Utc>,
    changes: &mut Vec<(Change, alert::Model)>,
) -> Result<(), DbErr> {
    let mut repeats: Option<(i32, f64, engine::Observed)> = None;
    // An alert these outcomes open: stored once, with its repeats folded in, so a client sees
    // one `created` event for it rather than `created` and `updated`.
    let mut fresh: Option<(alert::Model, engine::Observed)> = None;
    for outcome in outcomes {
        match outcome {
            Outcome::Nothing => {}
            Outcome::Fire { value, observed } => {
                if let Some((a, seen)) = &mut fresh {
                    a.count += 1;
                    a.value = value;
                    *seen = observed;
                } else if open.is_some() {
                    let n = repeats.as_ref().map_or(0, |r| r.0);
                    repeats = Some((n + 1, value, observed));
                } else {
                    let a = alert::Model {
                        id: Uuid::now_v7(),
                        grower_id: rule.grower_id,
                        device_id,
                        rule_id: rule.id,
                        metric: rule.metric.clone(),
                        severity: rule.severity,
                        status: AlertStatus::Active,
                        message: String::new(),
                        value,
                        count: 1,
                        created_at: now,
                        last_seen_at: now,
                        acknowledged_at: None,
                        acknowledged_by: None,
                        resolved_at: None,
                        resolved_by: None,
                        updated_at: now,
                    };
                    fresh = Some((a, observed));
                }
            }
            Outcome::Clear if rule.auto_resolve => {
                let current = match (fresh.take(), open.take()) {
                    (Some(f), _) => Some(store_fresh(txn, judge, f, changes).await?),
                    (None, Some(a)) => Some(flush_repeats(txn, judge, a, repeats.take(), now, changes).await?),
                    (None, None) => None,
                };
                if let Some(a) = current
                    && let Some(resolved) =
                        super::transition::transition(txn, a.id.into(), AlertStatus::Resolved, None, now).await?
                {
                    changes.push((Change::Resolved, resolved));
                }
            }
            Outcome::Clear => {}
        }
    }
    if let Some(f) = fresh {
        store_fresh(txn, judge, f, changes).await?;
    }
    if let Some(a) = open {
        flush_repeats(txn, judge, a, repeats, now, changes).await?;
    }
    Ok(())
}

/// Inserts an alert opened by this evaluation, with the message of its last firing reading.
async fn store_fresh(
    txn: &DatabaseTransaction,
    judge: &engine::Rule,
    (mut a, observed): (alert::Model, engine::Observed),
    changes: &mut Vec<(Change, alert::Model)>,
) -> Result<alert::Model, DbErr> {
    a.message = engine::message(judge, a.value, observed);
    alert::Entity::insert(sea_orm::IntoActiveModel::into_active_model(a.clone())).exec_without_returning(txn).await?;
    changes.push((Change::Created, a.clone()));
    Ok(a)
}

async fn flush_repeats(
    txn: &DatabaseTransaction,
    judge: &engine::Rule,
    mut a: alert::Model,
    repeats: Option<(i32, f64, engine::Observed)>,
    now: DateTime<Utc>,
    changes: &mut Vec<(Change, alert::Model)>,
) -> Result<alert::Model, DbErr> {
    let Some((n, value, observed)) = repeats else { return Ok(a) };
    let message = engine::message(judge, value, observed);
    let updated = alert::Entity::update_many()
        .col_expr(alert::Column::Value, Expr::value(value))
        .col_expr(alert::Column::Message, Expr::value(message.clone()))
        .col_expr(alert::Column::Count, Expr::col(alert::Column::Count).add(n))
        .col_expr(alert::Column::LastSeenAt, Expr::value(now))
        .col_expr(alert::Column::UpdatedAt, Expr::value(now))
        .filter(alert::Column::Id.eq(a.id))
        .filter(alert::Column::Status.ne(AlertStatus::Resolved))
        .exec(txn)
        .await?;
    // Resolved by a person meanwhile: their word stands.
    if updated.rows_affected == 1 {
        a.value = value;
        a.message = message;
        a.count += n;
        a.last_seen_at = now;
        a.updated_at = now;
        changes.push((Change::Updated, a.clone()));
    }
    Ok(a)
}
