//! Storing a batch: the new readings, the live state they move, and the batch's rule
//! evaluation jobs, in one write transaction, so they commit together or not at all. The call
//! returns only after the commit, and `synchronous_commit` (PostgreSQL) / `synchronous=FULL`
//! (SQLite) make a commit durable: an acknowledged reading survives a crash.

use std::collections::HashSet;

use chrono::NaiveDate;
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Expr, OnConflict, Query},
};
use uuid::Uuid;

use super::{DeviceState, Partitions, Reading, SensorReadings, ts_at, ts_value};
use crate::{
    db::{Db, WriteTxn},
    jobs::NewJob,
};

/// Stores a batch and updates the live state: readings already stored (same device, metric and
/// ts) are skipped, and an older reading never replaces a newer live value. `jobs` (the batch's
/// rule evaluations) commit with it. `readings` is left sorted by (device, metric, ts); the
/// answer says, for each in that order, whether it was new (a key repeated within the batch is
/// stored once, as its first copy).
pub async fn insert(
    db: &Db,
    partitions: &Partitions,
    readings: &mut [Reading],
    jobs: &[NewJob],
) -> Result<Vec<bool>, DbErr> {
    if readings.is_empty() {
        return Ok(Vec::new());
    }
    // One lock order for every writer, so concurrent batches touching the same keys cannot deadlock.
    readings.sort_by(|a, b| (a.device_id, &a.metric, a.ts).cmp(&(b.device_id, &b.metric, b.ts)));
    let days: HashSet<NaiveDate> = readings.iter().map(|r| r.ts.date_naive()).collect();
    partitions.ensure(db, &days).await?;
    let new = match store(db, readings, jobs).await {
        Ok(new) => new,
        // A partition this process believed in is gone (dropped by another instance's
        // retention, or by hand): forget what we know, create what is needed, try once more.
        Err(e) if Partitions::is_missing(&e) => {
            partitions.forget();
            partitions.ensure(db, &days).await?;
            store(db, readings, jobs).await?
        }
        Err(e) => return Err(e),
    };
    // The new keys, in the batch's order: walk both sorted lists together.
    let mut new = new.into_iter().peekable();
    Ok(readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let repeat = i > 0 && {
                let p = &readings[i - 1];
                (p.device_id, &p.metric, p.ts) == (r.device_id, &r.metric, r.ts)
            };
            let key = (r.device_id, r.metric.as_str(), r.ts.timestamp_micros());
            while new.peek().is_some_and(|(d, m, ts)| (*d, m.as_str(), *ts) < key) {
                new.next();
            }
            !repeat && new.peek().is_some_and(|(d, m, ts)| (*d, m.as_str(), *ts) == key)
        })
        .collect())
}

/// The transaction; the keys (device, metric, µs) of the readings that were new, sorted.
async fn store(db: &Db, readings: &[Reading], jobs: &[NewJob]) -> Result<Vec<(Uuid, String, i64)>, DbErr> {
    let txn = db.begin_write().await?;
    let mut new = insert_readings(&txn, readings).await?;
    upsert_state(&txn, readings).await?;
    crate::jobs::insert(&txn, jobs).await?;
    txn.commit().await?;
    new.sort_unstable();
    Ok(new)
}

/// Rows per statement: SQLite allows 32,766 parameters, four per row here.
const ROWS_PER_STATEMENT: usize = 5000;

async fn insert_readings(txn: &WriteTxn, readings: &[Reading]) -> Result<Vec<(Uuid, String, i64)>, DbErr> {
    let backend = txn.get_database_backend();
    let mut new = Vec::with_capacity(readings.len());
    for chunk in readings.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert
            .into_table(SensorReadings::Table)
            .columns([SensorReadings::DeviceId, SensorReadings::Metric, SensorReadings::Ts, SensorReadings::Value])
            .on_conflict(
                OnConflict::columns([SensorReadings::DeviceId, SensorReadings::Metric, SensorReadings::Ts])
                    .do_nothing()
                    .to_owned(),
            )
            .returning(Query::returning().columns([
                SensorReadings::DeviceId,
                SensorReadings::Metric,
                SensorReadings::Ts,
            ]));
        for r in chunk {
            insert.values_panic([
                r.device_id.into(),
                r.metric.as_str().into(),
                ts_value(backend, r.ts).into(),
                r.value.into(),
            ]);
        }
        for row in txn.query_all(&insert).await? {
            new.push((row.try_get_by_index(0)?, row.try_get_by_index(1)?, ts_at(backend, &row, 2)?.timestamp_micros()));
        }
    }
    Ok(new)
}

/// Moves each (device, metric)'s live value to the batch's latest reading, unless a newer one
/// is stored already.
async fn upsert_state(txn: &WriteTxn, sorted: &[Reading]) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let latest = latest_per_key(sorted);
    for chunk in latest.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = Query::insert();
        upsert
            .into_table(DeviceState::Table)
            .columns([DeviceState::DeviceId, DeviceState::Metric, DeviceState::Ts, DeviceState::Value])
            .on_conflict(
                OnConflict::columns([DeviceState::DeviceId, DeviceState::Metric])
                    .update_columns([DeviceState::Ts, DeviceState::Value])
                    .action_and_where(Expr::cust("excluded.ts > device_state.ts"))
                    .to_owned(),
            );
        for r in chunk {
            upsert.values_panic([
                r.device_id.into(),
                r.metric.as_str().into(),
                ts_value(backend, r.ts).into(),
                r.value.into(),
            ]);
        }
        txn.execute(&upsert).await?;
    }
    Ok(())
}

/// The latest reading per (device, metric) of a batch that is sorted by (device, metric, ts):
/// for each key, the first reading with the greatest `ts` (the one that is stored when the batch
/// repeats a key).
fn latest_per_key(sorted: &[Reading]) -> Vec<&Reading> {
    let mut out: Vec<&Reading> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if last.device_id == r.device_id && last.metric == r.metric => {
                if r.ts > last.ts {
                    *last = r;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn r(device: u128, metric: &str, secs: i64, value: f64) -> Reading {
        Reading {
            device_id: Uuid::from_u128(device),
            metric: metric.into(),
            ts: DateTime::from_timestamp(secs, 0).unwrap(),
            value,
        }
    }

    #[test]
    fn latest_per_key_takes_the_newest_and_the_first_of_equal_timestamps() {
        let mut batch =
            vec![r(1, "t", 10, 1.0), r(1, "t", 30, 2.0), r(1, "t", 30, 9.0), r(1, "h", 5, 3.0), r(2, "t", 1, 4.0)];
        batch.sort_by(|a, b| (a.device_id, &a.metric, a.ts).cmp(&(b.device_id, &b.metric, b.ts)));
        let latest: Vec<(u128, &str, f64)> =
            latest_per_key(&batch).iter().map(|r| (r.device_id.as_u128(), r.metric.as_str(), r.value)).collect();
        assert_eq!(latest, vec![(1, "h", 3.0), (1, "t", 2.0), (2, "t", 4.0)]);
    }
}
