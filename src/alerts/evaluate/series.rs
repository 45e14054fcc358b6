//! `alert_series_states`: the last reading evaluated of each (device, metric), shared by every
//! rule that watches it. A run locks its series' rows before anything else, in key order, so
//! evaluations of the same readings are serialised (and two of overlapping series cannot
//! deadlock); it writes back the positions that moved.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::OnConflict,
};

use super::rows::{CHUNK, insert_chunked};
use crate::{
    alerts::{engine::Series, entity::series_state},
    ids::DeviceId,
};

/// A (device, metric).
type Key = (DeviceId, String);

/// Makes sure each (device, metric) has a series row and locks them all (PostgreSQL
/// `FOR UPDATE`, in key order; SQLite holds the write lock already); their positions, in the
/// order of `keys`.
pub(super) async fn lock_series(
    txn: &DatabaseTransaction,
    keys: &[Key],
    now: DateTime<Utc>,
) -> Result<Vec<Series>, DbErr> {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let mut found = select_series(txn, &sorted).await?;
    let missing: Vec<Key> = sorted.into_iter().filter(|k| !found.contains_key(k)).collect();
    if !missing.is_empty() {
        let fresh = |(d, m): &Key| row(*d, m, Series::default(), now);
        insert_chunked(txn, &missing, fresh, on_key().do_nothing().to_owned()).await?;
        found.extend(select_series(txn, &missing).await?);
    }
    Ok(keys.iter().map(|k| found.get(k).copied().unwrap_or_default()).collect())
}

/// The series rows of `keys` that exist, locked in key order.
async fn select_series(txn: &DatabaseTransaction, keys: &[Key]) -> Result<HashMap<Key, Series>, DbErr> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let wanted: HashSet<&Key> = chunk.iter().collect();
        let mut devices: Vec<DeviceId> = chunk.iter().map(|k| k.0).collect();
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
            let key = (DeviceId::from(s.device_id), s.metric);
            if wanted.contains(&key) {
                out.insert(key, Series { last: s.last_ts.zip(s.last_value) });
            }
        }
    }
    Ok(out)
}

/// Writes the series positions at `moved` (indexes into `keys` and `positions`).
pub(super) async fn save_series(
    txn: &DatabaseTransaction,
    keys: &[Key],
    positions: &[Series],
    moved: &[usize],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let columns = [series_state::Column::LastTs, series_state::Column::LastValue, series_state::Column::UpdatedAt];
    let moved_row = |&at: &usize| row(keys[at].0, &keys[at].1, positions[at], now);
    insert_chunked(txn, moved, moved_row, on_key().update_columns(columns).to_owned()).await
}

fn row(device: DeviceId, metric: &str, position: Series, now: DateTime<Utc>) -> series_state::ActiveModel {
    series_state::ActiveModel {
        device_id: Set(device.into()),
        metric: Set(metric.to_string()),
        last_ts: Set(position.last.map(|l| l.0)),
        last_value: Set(position.last.map(|l| l.1)),
        updated_at: Set(now),
    }
}

/// The conflict target of a series row: its (device, metric).
fn on_key() -> OnConflict {
    OnConflict::columns([series_state::Column::DeviceId, series_state::Column::Metric])
}
