//! `alert_rule_states`: a rule's own evaluation state per device (a `forSeconds` streak, an
//! anomaly baseline), only for rules that keep one. Locked with the series, written back only
//! where it changed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};

use super::{
    Pair,
    rows::{CHUNK, insert_chunked, pair_condition},
};
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
    let fresh = |&(r, d): &Pair| row(r, d, &State::default(), now);
    insert_chunked(txn, &missing, fresh, on_key().do_nothing().to_owned()).await?;
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
    let columns = [
        rule_state::Column::BreachSince,
        rule_state::Column::Mean,
        rule_state::Column::Variance,
        rule_state::Column::Samples,
        rule_state::Column::UpdatedAt,
    ];
    let changed = |&(&(r, d), s): &(&Pair, &State)| row(r, d, s, now);
    insert_chunked(txn, &all, changed, on_key().update_columns(columns).to_owned()).await
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
