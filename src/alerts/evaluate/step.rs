//! Evaluating a gathered run inside its transaction: the series rows locked first (which
//! serialises every evaluation of the same readings), each (rule, device) stepped through its
//! new readings, the outcomes applied, the positions and states saved, the deliveries enqueued.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};
use uuid::Uuid;

use super::{
    Pair,
    apply::{Subject, apply, open_alerts},
    gather::Gathered,
    series::{lock_series, save_series},
    states::{lock_states, save_states},
};
use crate::{
    alerts::{
        Change, delivery,
        engine::{self, Outcome},
        entity::alert,
    },
    ids::RuleId,
    state::AppState,
};

/// Steps every (rule, device) through its readings and applies the outcomes, inside `txn`;
/// whether any alert changed (wake the workers for the deliveries once committed).
pub(super) async fn evaluate(
    state: &AppState,
    txn: &DatabaseTransaction,
    g: Gathered,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut positions = lock_series(txn, &g.keys, now).await?;
    let judges: HashMap<RuleId, engine::Rule> = g.models.iter().map(|(id, m)| (*id, engine::Rule::from(m))).collect();
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
    for (&(rule_id, device_id), &at) in &g.pairs {
        let Some(rule) = judges.get(&rule_id) else { continue };
        let model = &g.models[&rule_id];
        let position = positions[at];
        let current = open.remove(&(rule_id, device_id));
        // A rule without state of its own and without an open alert only matters if it fires,
        // which the extremes of the readings tell (most rules, most of the time, do not).
        if current.is_none() && !rule.keeps_state() {
            let e = extremes[at].get_or_insert_with(|| {
                engine::Extremes::of(position.last, g.series[at].iter().copied().filter(|(ts, _)| position.admits(*ts)))
            });
            if !e.as_ref().is_some_and(|e| rule.may_fire(e)) {
                continue;
            }
        }
        let mut previous = position.last;
        let mut scratch = engine::State::default();
        let st = if rule.keeps_state() { states.entry((rule_id, device_id)).or_default() } else { &mut scratch };
        let outcomes: Vec<Outcome> = g.series[at]
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
        let subject = Subject { rule: model, judge: rule, device_id };
        Box::pin(apply(txn, subject, current, outcomes, now, made)).await?;
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
        let first = made.iter().filter_map(|(_, a)| g.accepted.get(&a.device_id.into())).min();
        let accepted_at = first.and_then(|ms| DateTime::from_timestamp_millis(*ms));
        delivery::notify(txn, state, *grower_id, made, accepted_at).await?;
    }
    Ok(changes.values().any(|c| !c.is_empty()))
}
