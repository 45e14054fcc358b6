//! Reading the series and the live state back: point reads for devices and rules, raw pages
//! and SQL-side buckets for history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr,
    sea_query::{Expr, ExprTrait, Order, Query},
    sqlx::{self, AssertSqlSafe, Row},
};
use uuid::Uuid;

use super::{DeviceState, Reading, SensorReadings, from_micros, ts_at, ts_value};
use crate::db::error::from_sqlx;

/// The live state of a device: the latest value per metric, by metric name.
pub async fn latest(db: &DatabaseConnection, device_id: Uuid) -> Result<Vec<(String, f64, DateTime<Utc>)>, DbErr> {
    let backend = db.get_database_backend();
    let select = Query::select()
        .columns([DeviceState::Metric, DeviceState::Value, DeviceState::Ts])
        .from(DeviceState::Table)
        .and_where(Expr::col(DeviceState::DeviceId).eq(device_id))
        .order_by(DeviceState::Metric, Order::Asc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?, ts_at(backend, row, 2)?)))
        .collect()
}

/// The time of the latest reading of `metric` for each of `devices` that has one.
pub async fn latest_of_metric(
    db: &DatabaseConnection,
    devices: &[Uuid],
    metric: &str,
) -> Result<HashMap<Uuid, DateTime<Utc>>, DbErr> {
    let backend = db.get_database_backend();
    let mut out = HashMap::new();
    for chunk in devices.chunks(500) {
        let select = Query::select()
            .columns([DeviceState::DeviceId, DeviceState::Ts])
            .from(DeviceState::Table)
            .and_where(Expr::col(DeviceState::Metric).eq(metric))
            .and_where(Expr::col(DeviceState::DeviceId).is_in(chunk.iter().copied()))
            .to_owned();
        for row in db.query_all(&select).await? {
            out.insert(row.try_get_by_index(0)?, ts_at(backend, &row, 1)?);
        }
    }
    Ok(out)
}

/// The stored readings of `devices` × `metrics` with `from <= ts <= to`, in time order.
pub async fn readings_between(
    db: &DatabaseConnection,
    devices: &[Uuid],
    metrics: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Reading>, DbErr> {
    if devices.is_empty() || metrics.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let select = Query::select()
        .columns([SensorReadings::DeviceId, SensorReadings::Metric, SensorReadings::Ts, SensorReadings::Value])
        .from(SensorReadings::Table)
        .and_where(Expr::col(SensorReadings::DeviceId).is_in(devices.iter().copied()))
        .and_where(Expr::col(SensorReadings::Metric).is_in(metrics.iter().map(String::as_str)))
        .and_where(Expr::col(SensorReadings::Ts).gte(ts_value(backend, from)))
        .and_where(Expr::col(SensorReadings::Ts).lte(ts_value(backend, to)))
        .order_by(SensorReadings::Ts, Order::Asc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Reading {
                device_id: row.try_get_by_index(0)?,
                metric: row.try_get_by_index(1)?,
                ts: ts_at(backend, row, 2)?,
                value: row.try_get_by_index(3)?,
            })
        })
        .collect()
}

/// How the readings of one bucket become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    /// The value of the latest reading in the bucket.
    Last,
}

/// A time range `[from, to)` of one device's metric.
#[derive(Debug, Clone)]
pub struct Series {
    pub device_id: Uuid,
    pub metric: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Raw readings in time order, after `after` (a cursor), at most `limit`.
pub async fn raw(
    db: &DatabaseConnection,
    s: &Series,
    after: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<(DateTime<Utc>, f64)>, DbErr> {
    let backend = db.get_database_backend();
    let mut select = Query::select();
    select
        .columns([SensorReadings::Ts, SensorReadings::Value])
        .from(SensorReadings::Table)
        .and_where(Expr::col(SensorReadings::DeviceId).eq(s.device_id))
        .and_where(Expr::col(SensorReadings::Metric).eq(s.metric.as_str()))
        .and_where(Expr::col(SensorReadings::Ts).gte(ts_value(backend, s.from)))
        .and_where(Expr::col(SensorReadings::Ts).lt(ts_value(backend, s.to)))
        .order_by(SensorReadings::Ts, Order::Asc)
        .limit(limit);
    if let Some(after) = after.filter(|a| *a >= s.from) {
        select.and_where(Expr::col(SensorReadings::Ts).gt(ts_value(backend, after)));
    }
    db.query_all(&select).await?.iter().map(|row| Ok((ts_at(backend, row, 0)?, row.try_get_by_index(1)?))).collect()
}

/// Aggregates per bucket of `bucket_secs`, computed in SQL. Buckets are aligned to the Unix
/// epoch, hence to UTC minutes, hours and midnights; each point carries its bucket's start.
/// Buckets without readings are absent.
///
/// Written per backend: PostgreSQL groups by `date_bin`; SQLite enumerates the buckets with a
/// recursive CTE and takes one correlated aggregate per bucket over its primary-key range, so
/// each range is read in index order and nothing is sorted (a `GROUP BY (ts / w) * w` would
/// spill every row into a temporary B-tree; see `docs/architecture.md`, "Forks").
pub async fn buckets(
    db: &DatabaseConnection,
    s: &Series,
    bucket_secs: i64,
    agg: Agg,
) -> Result<Vec<(DateTime<Utc>, f64)>, DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let select = match agg {
            Agg::Avg => "avg(value)",
            Agg::Min => "min(value)",
            Agg::Max => "max(value)",
            Agg::Sum => "sum(value)",
            Agg::Count => "count(*)::float8",
            Agg::Last => "(array_agg(value ORDER BY ts DESC))[1]",
        };
        let sql = format!(
            "SELECT date_bin(make_interval(secs => $3), ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b, \
             {select} AS v FROM sensor_readings \
             WHERE device_id = $1 AND metric = $2 AND ts >= $4 AND ts < $5 GROUP BY b ORDER BY b"
        );
        return sqlx::query_as::<_, (DateTime<Utc>, f64)>(AssertSqlSafe(sql))
            .bind(s.device_id)
            .bind(s.metric.as_str())
            .bind(bucket_secs as f64)
            .bind(s.from)
            .bind(s.to)
            .fetch_all(db.get_postgres_connection_pool())
            .await
            .map_err(from_sqlx);
    }
    // Empty buckets give NULL (count: NULLIF) and are left out, as on PostgreSQL.
    let range = "FROM sensor_readings WHERE device_id = ?1 AND metric = ?2 \
                 AND ts >= max(g.b, ?4) AND ts < min(g.b + ?3, ?5)";
    let value = match agg {
        Agg::Avg => format!("SELECT avg(value) {range}"),
        Agg::Min => format!("SELECT min(value) {range}"),
        Agg::Max => format!("SELECT max(value) {range}"),
        Agg::Sum => format!("SELECT sum(value) {range}"),
        Agg::Count => format!("SELECT CAST(NULLIF(count(*), 0) AS REAL) {range}"),
        Agg::Last => format!("SELECT value {range} ORDER BY ts DESC LIMIT 1"),
    };
    let sql = format!(
        "WITH RECURSIVE g(b) AS (SELECT (?4 / ?3) * ?3 UNION ALL SELECT b + ?3 FROM g WHERE b + ?3 < ?5) \
         SELECT b, v FROM (SELECT g.b AS b, ({value}) AS v FROM g) WHERE v IS NOT NULL ORDER BY b"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(s.device_id)
        .bind(s.metric.as_str())
        .bind(bucket_secs * 1_000_000)
        .bind(s.from.timestamp_micros())
        .bind(s.to.timestamp_micros())
        .fetch_all(db.get_sqlite_connection_pool())
        .await
        .map_err(from_sqlx)?;
    rows.iter()
        .map(|row| Ok((from_micros(row.try_get::<i64, _>(0)?), row.try_get::<f64, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(from_sqlx)
}
