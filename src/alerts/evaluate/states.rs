//! `alert_rule_states`: a rule's own evaluation state per device (a `forSeconds` streak, an
//! anomaly baseline), only for rules that keep one. Locked with the series, written back only
//! where it changed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, Value,
    sea_query::OnConflict,
};

use super::{Pair, series::CHUNK};
use crate::alerts::{engine::State, entity::rule_state};

/// Makes sure each pair has a state row and locks them all (PostgreSQL `FOR UPDATE`; SQLite
/// holds the write lock already), returning the states. Rows are locked as they are found;
/// only pairs seen for the first time are inserted (then locked).
pub(super) async fn lock_states(
    txn: &DatabaseTransaction,
    keys: &[Pair],
    now: DateTime<Utc>,
) -> Result<HashMap<Pair, State>, DbErr> {
    let mut out = select_states(txn, keys).await?;
    let missing: Vec<Pair> = keys.iter().filter(|k| !out.contains_key(k)).copied().collect();
    if missing.is_empty() {
        return Ok(out);
    }
    for chunk in missing.chunks(CHUNK) {
        let rows = chunk.iter().map(|&(r, d)| row(r, d, &State::default(), now));
        rule_state::Entity::insert_many(rows)
            .on_conflict(on_key().do_nothing().to_owned())
            .exec_without_returning(txn)
            .await?;
    }
    out.extend(select_states(txn, &missing).await?);
    Ok(out)
}

/// The state rows of `keys` that exist, locked in key order (so two evaluations of
/// overlapping pairs cannot deadlock).
async fn select_states(txn: &DatabaseTransaction, keys: &[Pair]) -> Result<HashMap<Pair, State>, DbErr> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let wanted: HashSet<&Pair> = chunk.iter().collect();
        let query = rule_state::Entity::find()
            .filter(pair_condition(chunk, rule_state::Column::RuleId, rule_state::Column::DeviceId))
            .order_by_asc(rule_state::Column::RuleId)
            .order_by_asc(rule_state::Column::DeviceId);
        for s in crate::db::for_update(query).all(txn).await? {
            let key = (s.rule_id.into(), s.device_id.into());
            if wanted.contains(&key) {
                let state =
                    State { breach_since: s.breach_since, mean: s.mean, variance: s.variance, samples: s.samples };
                out.insert(key, state);
            }
        }
    }
    Ok(out)
}

/// Writes `states` (those that changed).
pub(super) async fn save_states(
    txn: &DatabaseTransaction,
    states: &HashMap<Pair, State>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let all: Vec<_> = states.iter().collect();
    for chunk in all.chunks(CHUNK) {
        let rows = chunk.iter().map(|&(&(r, d), s)| row(r, d, s, now));
        rule_state::Entity::insert_many(rows)
            .on_conflict(
                on_key()
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

fn row(
    rule: crate::ids::RuleId,
    device: crate::ids::DeviceId,
    s: &State,
    now: DateTime<Utc>,
) -> rule_state::ActiveModel {
    rule_state::ActiveModel {
        rule_id: Set(rule.into()),
        device_id: Set(device.into()),
        breach_since: Set(s.breach_since),
        mean: Set(s.mean),
        variance: Set(s.variance),
        samples: Set(s.samples),
        updated_at: Set(now),
    }
}

/// The conflict target of a state row: its (rule, device).
fn on_key() -> OnConflict {
    OnConflict::columns([rule_state::Column::RuleId, rule_state::Column::DeviceId])
}

/// `a IN (…) AND b IN (…)`: a superset of the pairs (the caller keeps the pairs it asked for),
/// and one short statement whatever the number of pairs.
pub(super) fn pair_condition<A, B>(keys: &[(A, B)], a: impl ColumnTrait, b: impl ColumnTrait) -> Condition
where
    A: Copy + Ord + Into<Value>,
    B: Copy + Ord + Into<Value>,
{
    let mut xs: Vec<A> = keys.iter().map(|k| k.0).collect();
    let mut ys: Vec<B> = keys.iter().map(|k| k.1).collect();
    xs.sort_unstable();
    xs.dedup();
    ys.sort_unstable();
    ys.dedup();
    Condition::all().add(a.is_in(xs)).add(b.is_in(ys))
}
