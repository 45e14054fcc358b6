//! Where readings live: `sensor_readings` (the time series) and `device_state` (the latest
//! reading per device and metric). Every function here takes any backend; the statements are
//! built once with sea-query, which renders them for SQLite or PostgreSQL, and the one thing the
//! backends keep differently, the reading time, goes through [`ts_value`] and [`ts_at`]:
//!
//! - PostgreSQL: `timestamptz`, in a table range-partitioned by day ([`partitions`]), so
//!   retention drops whole days;
//! - SQLite: integer microseconds since the epoch, in a `WITHOUT ROWID` table keyed by
//!   (device, metric, ts), read in key order.
//!
//! What stays written per backend, in [`read`] and [`partitions`], is what only one of them can
//! do: `date_bin` buckets and partition DDL on PostgreSQL.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseBackend, DbErr, DeriveIden, QueryResult, Value};
use uuid::Uuid;

mod partitions;
mod read;
mod write;

pub use partitions::{Partitions, retain};
pub use read::{Agg, Series, buckets, latest, latest_of_metric, raw, readings_between};
pub use write::insert;

/// One validated reading. `ts` is already truncated to microseconds (both backends keep that).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device_id: Uuid,
    pub metric: String,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

#[derive(DeriveIden)]
enum SensorReadings {
    Table,
    DeviceId,
    Metric,
    Ts,
    Value,
}

#[derive(DeriveIden)]
enum DeviceState {
    Table,
    DeviceId,
    Metric,
    Ts,
    Value,
}

/// A reading time as `backend` stores it.
fn ts_value(backend: DatabaseBackend, t: DateTime<Utc>) -> Value {
    match backend {
        DatabaseBackend::Postgres => t.into(),
        _ => t.timestamp_micros().into(),
    }
}

/// The reading time in column `i` of a row.
fn ts_at(backend: DatabaseBackend, row: &QueryResult, i: usize) -> Result<DateTime<Utc>, DbErr> {
    match backend {
        DatabaseBackend::Postgres => row.try_get_by_index(i),
        _ => Ok(from_micros(row.try_get_by_index(i)?)),
    }
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}
