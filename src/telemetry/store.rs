//! Where readings live. Each function here is backend-neutral to its callers and picks the
//! statement for the backend inside:
//!
//! - PostgreSQL: a batch is **one statement** — `unnest` of four array parameters into
//!   `sensor_readings` (`ON CONFLICT DO NOTHING`), with the `device_state` upsert in a
//!   data-modifying CTE of the same statement, so the batch and the live state commit together
//!   in one round trip. The statement text is the same for every batch size, so it is prepared
//!   once per connection.
//! - SQLite: one multi-row `INSERT` for the readings and one for the state, in one
//!   `BEGIN IMMEDIATE` transaction (`ts` stored as integer microseconds).
//!
//! Either way the call returns only after the commit, and `synchronous_commit` (PostgreSQL) /
//! `synchronous=FULL` (SQLite) make a commit durable: an acknowledged reading survives a crash.

use std::{collections::HashSet, sync::Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    DatabaseBackend, DatabaseConnection, DbErr,
    sqlx::{self, AssertSqlSafe, Row},
};
use uuid::Uuid;

use crate::{db::error::from_sqlx, jobs::NewJob};

/// One validated reading. `ts` is already truncated to microseconds (both backends keep that).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device_id: Uuid,
    pub metric: String,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
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

/// Stores a batch and updates the live state; returns how many readings were new.
/// Readings already stored (same device, metric and ts) are skipped, and an older reading never
/// replaces a newer live value. `jobs` (rule evaluations of this batch) commit with it.
pub async fn insert(
    db: &DatabaseConnection,
    partitions: &Partitions,
    readings: &mut [Reading],
    jobs: &[NewJob],
) -> Result<u64, DbErr> {
    Ok(insert_batch(db, partitions, readings, jobs, false).await?.count)
}

/// [`insert`], also saying which readings were new (for realtime subscribers, who get only
/// those): one flag per reading, in the order `readings` is left in (sorted).
pub async fn insert_marking_new(
    db: &DatabaseConnection,
    partitions: &Partitions,
    readings: &mut [Reading],
    jobs: &[NewJob],
) -> Result<(u64, Vec<bool>), DbErr> {
    let inserted = insert_batch(db, partitions, readings, jobs, true).await?;
    let new = inserted.new.unwrap_or_default();
    // A key repeated within the batch is stored once (its first copy; the sort is stable).
    let flags = readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let repeat = i > 0 && {
                let p = &readings[i - 1];
                (p.device_id, &p.metric, p.ts) == (r.device_id, &r.metric, r.ts)
            };
            !repeat && new.contains(&(r.device_id, r.metric.clone(), r.ts.timestamp_micros()))
        })
        .collect();
    Ok((inserted.count, flags))
}

/// What a batch insert did: the count of new readings and, when asked, their keys.
struct Inserted {
    count: u64,
    new: Option<HashSet<(Uuid, String, i64)>>,
}

async fn insert_batch(
    db: &DatabaseConnection,
    partitions: &Partitions,
    readings: &mut [Reading],
    jobs: &[NewJob],
    returning: bool,
) -> Result<Inserted, DbErr> {
    if readings.is_empty() {
        return Ok(Inserted { count: 0, new: returning.then(HashSet::new) });
    }
    // One lock order for every writer, so concurrent batches touching the same keys cannot deadlock.
    readings.sort_by(|a, b| (a.device_id, &a.metric, a.ts).cmp(&(b.device_id, &b.metric, b.ts)));
    match db.get_database_backend() {
        DatabaseBackend::Postgres => insert_pg(db, partitions, readings, jobs, returning).await,
        _ => insert_sqlite(db, readings, jobs, returning).await,
    }
}

/// One statement per batch, autocommit: the readings, the live state, and the batch's rule
/// evaluation jobs with their wake-up (`pg_notify`, delivered at commit; the `woke` CTE is
/// referenced so that it runs, and only when a job was inserted). The same prepared statement
/// serves every batch, with or without jobs. `$returning` is what the readings' insert returns,
/// `$select` the final query over it.
macro_rules! pg_batch_statement {
    ($returning:literal, $select:literal) => {
        concat!(
            "WITH ins AS (
    INSERT INTO sensor_readings (device_id, metric, ts, value)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::float8[])
    ON CONFLICT DO NOTHING
    RETURNING ",
            $returning,
            "
), st AS (
    INSERT INTO device_state (device_id, metric, ts, value)
    SELECT * FROM unnest($5::uuid[], $6::text[], $7::timestamptz[], $8::float8[])
    ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value
    WHERE excluded.ts > device_state.ts
), job AS (
    INSERT INTO background_jobs (id, job_type, payload, priority, status, attempts, max_attempts, run_at,
        created_at, updated_at)
    SELECT id, job_type, payload, priority, 'queued', 0, max_attempts, run_at, $15, $15
    FROM unnest($9::uuid[], $10::text[], $11::jsonb[], $12::int2[], $13::int4[], $14::timestamptz[])
        AS j(id, job_type, payload, priority, max_attempts, run_at)
    RETURNING 1
), woke AS (
    SELECT pg_notify('mash_jobs', '') FROM (SELECT 1 FROM job LIMIT 1) AS any_job
)
",
            $select
        )
    };
}

/// The batch statement answering how many readings were new.
const PG_INSERT: &str = pg_batch_statement!("1", "SELECT count(*), (SELECT count(*) FROM woke) FROM ins");

/// The batch statement answering the keys of the new readings.
const PG_INSERT_RETURNING: &str = pg_batch_statement!(
    "device_id, metric, ts",
    "SELECT device_id, metric, ts FROM ins WHERE (SELECT count(*) FROM woke) >= 0"
);

/// Rows of either statement as an [`Inserted`].
fn inserted_pg(rows: Vec<sqlx::postgres::PgRow>, returning: bool) -> Result<Inserted, sqlx::Error> {
    if !returning {
        let count: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        return Ok(Inserted { count: count as u64, new: None });
    }
    let mut new = HashSet::with_capacity(rows.len());
    for r in &rows {
        let ts: DateTime<Utc> = r.try_get(2)?;
        new.insert((r.try_get::<Uuid, _>(0)?, r.try_get::<String, _>(1)?, ts.timestamp_micros()));
    }
    Ok(Inserted { count: rows.len() as u64, new: Some(new) })
}

async fn insert_pg(
    db: &DatabaseConnection,
    partitions: &Partitions,
    readings: &[Reading],
    jobs: &[NewJob],
    returning: bool,
) -> Result<Inserted, DbErr> {
    let pool = db.get_postgres_connection_pool();
    let days: HashSet<NaiveDate> = readings.iter().map(|r| r.ts.date_naive()).collect();
    partitions.ensure(pool, &days).await?;
    let latest = latest_per_key(readings);
    let query = || {
        sqlx::query(if returning { PG_INSERT_RETURNING } else { PG_INSERT })
            .bind(readings.iter().map(|r| r.device_id).collect::<Vec<_>>())
            .bind(readings.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>())
            .bind(readings.iter().map(|r| r.ts).collect::<Vec<_>>())
            .bind(readings.iter().map(|r| r.value).collect::<Vec<_>>())
            .bind(latest.iter().map(|r| r.device_id).collect::<Vec<_>>())
            .bind(latest.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>())
            .bind(latest.iter().map(|r| r.ts).collect::<Vec<_>>())
            .bind(latest.iter().map(|r| r.value).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.job_type).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| sqlx::types::Json(&j.payload)).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
            .bind(Utc::now())
    };
    let run = async || -> Result<Inserted, sqlx::Error> { inserted_pg(query().fetch_all(pool).await?, returning) };
    match run().await {
        Ok(n) => Ok(n),
        // A partition this process believed in is gone (dropped by another instance's
        // retention, or by hand): forget what we know, create what is needed, try once more.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
            partitions.forget();
            partitions.ensure(pool, &days).await?;
            run().await.map_err(from_sqlx)
        }
        Err(e) => Err(from_sqlx(e)),
    }
}

/// Multi-row `INSERT … VALUES (?, ?, ?, ?), …` for `rows` rows, with an optional tail.
fn values_sql(head: &str, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + rows * 11 + tail.len());
    sql.push_str(head);
    for i in 0..rows {
        sql.push_str(if i == 0 { "(?,?,?,?)" } else { ",(?,?,?,?)" });
    }
    sql.push_str(tail);
    sql
}

async fn insert_sqlite(
    db: &DatabaseConnection,
    readings: &[Reading],
    jobs: &[NewJob],
    returning: bool,
) -> Result<Inserted, DbErr> {
    let pool = db.get_sqlite_connection_pool();
    let latest = latest_per_key(readings);
    let _gate = crate::db::write_gate(db).await;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(from_sqlx)?;
    let tail =
        if returning { " ON CONFLICT DO NOTHING RETURNING device_id, metric, ts" } else { " ON CONFLICT DO NOTHING" };
    let sql = values_sql("INSERT INTO sensor_readings (device_id, metric, ts, value) VALUES ", readings.len(), tail);
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for r in readings {
        q = q.bind(r.device_id).bind(r.metric.as_str()).bind(r.ts.timestamp_micros()).bind(r.value);
    }
    let inserted = if returning {
        let rows = q.fetch_all(&mut *tx).await.map_err(from_sqlx)?;
        let mut new = HashSet::with_capacity(rows.len());
        for r in &rows {
            new.insert((
                r.try_get::<Uuid, _>(0).map_err(from_sqlx)?,
                r.try_get::<String, _>(1).map_err(from_sqlx)?,
                r.try_get::<i64, _>(2).map_err(from_sqlx)?,
            ));
        }
        Inserted { count: rows.len() as u64, new: Some(new) }
    } else {
        Inserted { count: q.execute(&mut *tx).await.map_err(from_sqlx)?.rows_affected(), new: None }
    };
    let sql = values_sql(
        "INSERT INTO device_state (device_id, metric, ts, value) VALUES ",
        latest.len(),
        " ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value \
         WHERE excluded.ts > device_state.ts",
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for r in &latest {
        q = q.bind(r.device_id).bind(r.metric.as_str()).bind(r.ts.timestamp_micros()).bind(r.value);
    }
    q.execute(&mut *tx).await.map_err(from_sqlx)?;
    for job in jobs {
        job.insert_sqlite(&mut tx).await.map_err(from_sqlx)?;
    }
    tx.commit().await.map_err(from_sqlx)?;
    Ok(inserted)
}

/// The live state of a device: the latest value per metric, by metric name.
pub async fn latest(db: &DatabaseConnection, device_id: Uuid) -> Result<Vec<(String, f64, DateTime<Utc>)>, DbErr> {
    const SQL: &str = "SELECT metric, value, ts FROM device_state WHERE device_id = $1 ORDER BY metric";
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let rows = sqlx::query_as::<_, (String, f64, DateTime<Utc>)>(SQL)
                .bind(device_id)
                .fetch_all(db.get_postgres_connection_pool())
                .await
                .map_err(from_sqlx)?;
            Ok(rows)
        }
        _ => {
            let rows = sqlx::query_as::<_, (String, f64, i64)>(SQL)
                .bind(device_id)
                .fetch_all(db.get_sqlite_connection_pool())
                .await
                .map_err(from_sqlx)?;
            Ok(rows.into_iter().map(|(m, v, ts)| (m, v, from_micros(ts))).collect())
        }
    }
}

/// The stored readings of `devices` × `metrics` with `from <= ts <= to`, in time order. On
/// SQLite they are read straight through sqlx (several times cheaper per row than
/// [`readings_between_in`], which serves PostgreSQL and transactions).
pub async fn readings_between(
    db: &DatabaseConnection,
    devices: &[Uuid],
    metrics: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Reading>, DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => readings_between_in(db, devices, metrics, from, to).await,
        _ if devices.is_empty() || metrics.is_empty() => Ok(Vec::new()),
        _ => {
            let sql = format!(
                "SELECT device_id, metric, ts, value FROM sensor_readings WHERE device_id IN ({}) AND metric IN ({}) \
                 AND ts >= ? AND ts <= ? ORDER BY ts",
                vec!["?"; devices.len()].join(","),
                vec!["?"; metrics.len()].join(",")
            );
            let mut q = sqlx::query_as::<_, (Uuid, String, i64, f64)>(AssertSqlSafe(sql));
            for d in devices {
                q = q.bind(*d);
            }
            for m in metrics {
                q = q.bind(m.as_str());
            }
            let rows = q
                .bind(from.timestamp_micros())
                .bind(to.timestamp_micros())
                .fetch_all(db.get_sqlite_connection_pool())
                .await
                .map_err(from_sqlx)?;
            Ok(rows
                .into_iter()
                .map(|(device_id, metric, ts, value)| Reading { device_id, metric, ts: from_micros(ts), value })
                .collect())
        }
    }
}

/// [`readings_between`] on any connection (a transaction's included).
pub async fn readings_between_in<C: sea_orm::ConnectionTrait>(
    db: &C,
    devices: &[Uuid],
    metrics: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Reading>, DbErr> {
    if devices.is_empty() || metrics.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let pg = backend == DatabaseBackend::Postgres;
    let mut n = 0;
    let mut placeholders = |count: usize| {
        let marks: Vec<String> = (0..count)
            .map(|_| {
                n += 1;
                if pg { format!("${n}") } else { "?".to_owned() }
            })
            .collect();
        marks.join(",")
    };
    let sql = format!(
        "SELECT device_id, metric, ts, value FROM sensor_readings WHERE device_id IN ({}) AND metric IN ({}) \
         AND ts >= {} AND ts <= {} ORDER BY ts",
        placeholders(devices.len()),
        placeholders(metrics.len()),
        placeholders(1),
        placeholders(1)
    );
    let mut values: Vec<sea_orm::Value> = devices.iter().map(|d| (*d).into()).collect();
    values.extend(metrics.iter().map(|m| m.as_str().into()));
    // SQLite keeps `ts` as microseconds since the epoch.
    if pg {
        values.extend([from.into(), to.into()]);
    } else {
        values.extend([from.timestamp_micros().into(), to.timestamp_micros().into()]);
    }
    let rows = db.query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await?;
    rows.iter()
        .map(|r| {
            let ts =
                if pg { r.try_get_by_index::<DateTime<Utc>>(2)? } else { from_micros(r.try_get_by_index::<i64>(2)?) };
            Ok(Reading {
                device_id: r.try_get_by_index(0)?,
                metric: r.try_get_by_index(1)?,
                ts,
                value: r.try_get_by_index(3)?,
            })
        })
        .collect()
}

/// The time of the latest reading of every (device, metric), as `device_state` keeps it.
pub async fn latest_times(db: &DatabaseConnection) -> Result<Vec<(Uuid, String, DateTime<Utc>)>, DbErr> {
    const SQL: &str = "SELECT device_id, metric, ts FROM device_state";
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            sqlx::query_as(SQL).fetch_all(db.get_postgres_connection_pool()).await.map_err(from_sqlx)
        }
        _ => {
            let rows = sqlx::query_as::<_, (Uuid, String, i64)>(SQL)
                .fetch_all(db.get_sqlite_connection_pool())
                .await
                .map_err(from_sqlx)?;
            Ok(rows.into_iter().map(|(d, m, ts)| (d, m, from_micros(ts))).collect())
        }
    }
}

/// The time of the latest reading of `metric` for each of `devices` that has one.
pub async fn latest_of_metric(
    db: &DatabaseConnection,
    devices: &[Uuid],
    metric: &str,
) -> Result<std::collections::HashMap<Uuid, DateTime<Utc>>, DbErr> {
    let mut out = std::collections::HashMap::new();
    for chunk in devices.chunks(500) {
        match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                let rows = sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(
                    "SELECT device_id, ts FROM device_state WHERE metric = $1 AND device_id = ANY($2)",
                )
                .bind(metric)
                .bind(chunk)
                .fetch_all(db.get_postgres_connection_pool())
                .await
                .map_err(from_sqlx)?;
                out.extend(rows);
            }
            _ => {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let sql = format!(
                    "SELECT device_id, ts FROM device_state WHERE metric = ? AND device_id IN ({placeholders})"
                );
                let mut q = sqlx::query_as::<_, (Uuid, i64)>(AssertSqlSafe(sql)).bind(metric);
                for d in chunk {
                    q = q.bind(*d);
                }
                let rows = q.fetch_all(db.get_sqlite_connection_pool()).await.map_err(from_sqlx)?;
                out.extend(rows.into_iter().map(|(d, ts)| (d, from_micros(ts))));
            }
        }
    }
    Ok(out)
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

/// Aggregates per bucket of `bucket_secs`, computed in SQL. Buckets are aligned to the Unix
/// epoch, hence to UTC minutes, hours and midnights; each point carries its bucket's start.
/// Buckets without readings are absent.
pub async fn buckets(
    db: &DatabaseConnection,
    s: &Series,
    bucket_secs: i64,
    agg: Agg,
) -> Result<Vec<(DateTime<Utc>, f64)>, DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let (select, order) = match agg {
                Agg::Avg => ("avg(value)", ""),
                Agg::Min => ("min(value)", ""),
                Agg::Max => ("max(value)", ""),
                Agg::Sum => ("sum(value)", ""),
                Agg::Count => ("count(*)::float8", ""),
                Agg::Last => ("(array_agg(value ORDER BY ts DESC))[1]", ""),
            };
            let sql = format!(
                "SELECT date_bin(make_interval(secs => $3), ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b, \
                 {select} AS v FROM sensor_readings \
                 WHERE device_id = $1 AND metric = $2 AND ts >= $4 AND ts < $5 GROUP BY b ORDER BY b{order}"
            );
            sqlx::query_as::<_, (DateTime<Utc>, f64)>(AssertSqlSafe(sql))
                .bind(s.device_id)
                .bind(s.metric.as_str())
                .bind(bucket_secs as f64)
                .bind(s.from)
                .bind(s.to)
                .fetch_all(db.get_postgres_connection_pool())
                .await
                .map_err(from_sqlx)
        }
        _ => {
            // SQLite: one correlated aggregate per bucket over its primary-key range, the buckets
            // enumerated by a recursive CTE. Each range is read in index order and nothing is
            // sorted (a `GROUP BY (ts / w) * w` would spill every row into a temporary B-tree).
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
    }
}

/// Raw readings in time order, after `after` (a cursor), at most `limit`.
pub async fn raw(
    db: &DatabaseConnection,
    s: &Series,
    after: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<(DateTime<Utc>, f64)>, DbErr> {
    let from_exclusive = after.filter(|a| *a >= s.from);
    match db.get_database_backend() {
        DatabaseBackend::Postgres => sqlx::query_as::<_, (DateTime<Utc>, f64)>(
            "SELECT ts, value FROM sensor_readings WHERE device_id = $1 AND metric = $2 \
             AND ts >= $3 AND ts < $4 AND ($5::timestamptz IS NULL OR ts > $5) ORDER BY ts LIMIT $6",
        )
        .bind(s.device_id)
        .bind(s.metric.as_str())
        .bind(s.from)
        .bind(s.to)
        .bind(from_exclusive)
        .bind(limit as i64)
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(from_sqlx),
        _ => {
            let rows = sqlx::query_as::<_, (i64, f64)>(
                "SELECT ts, value FROM sensor_readings WHERE device_id = ?1 AND metric = ?2 \
                 AND ts >= ?3 AND ts < ?4 AND ts > ?5 ORDER BY ts LIMIT ?6",
            )
            .bind(s.device_id)
            .bind(s.metric.as_str())
            .bind(s.from.timestamp_micros())
            .bind(s.to.timestamp_micros())
            .bind(from_exclusive.map_or(i64::MIN, |a| a.timestamp_micros()))
            .bind(limit as i64)
            .fetch_all(db.get_sqlite_connection_pool())
            .await
            .map_err(from_sqlx)?;
            Ok(rows.into_iter().map(|(ts, v)| (from_micros(ts), v)).collect())
        }
    }
}

/// Removes readings older than `cutoff`. PostgreSQL drops every day partition that ends at
/// or before the cutoff's day (whole days only, never a partial delete); SQLite deletes in
/// chunks so the write lock is never held for long. Returns what was removed, for the log.
pub async fn retain(db: &DatabaseConnection, partitions: &Partitions, cutoff: DateTime<Utc>) -> Result<String, DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            let cutoff_day = cutoff.date_naive();
            let mut dropped = Vec::new();
            for (name, day) in partitions.list(pool).await? {
                if day.succ_opt().is_some_and(|end| end <= cutoff_day) {
                    // DROP needs an exclusive lock on the parent; waiting for it behind a long
                    // read would queue every insert behind the DROP. Give up quickly instead and
                    // try again at the next round.
                    let mut tx = pool.begin().await.map_err(from_sqlx)?;
                    sqlx::query("SET LOCAL lock_timeout = '2s'").execute(&mut *tx).await.map_err(from_sqlx)?;
                    let dropped_now =
                        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}"))).execute(&mut *tx).await;
                    match dropped_now {
                        Ok(_) => tx.commit().await.map_err(from_sqlx)?,
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                            tracing::info!(partition = %name, "partition busy; retention will retry it next round");
                            continue;
                        }
                        Err(e) => return Err(from_sqlx(e)),
                    }
                    partitions.known.lock().unwrap_or_else(|p| p.into_inner()).remove(&day);
                    dropped.push(name);
                }
            }
            Ok(format!("dropped partitions: {dropped:?}"))
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            let mut total = 0u64;
            loop {
                let n = sqlx::query(
                    "DELETE FROM sensor_readings WHERE (device_id, metric, ts) IN \
                     (SELECT device_id, metric, ts FROM sensor_readings WHERE ts < ?1 LIMIT 5000)",
                )
                .bind(cutoff.timestamp_micros())
                .execute(pool)
                .await
                .map_err(from_sqlx)?
                .rows_affected();
                total += n;
                if n == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Ok(format!("deleted {total} readings"))
        }
    }
}

/// The day partitions of `sensor_readings` on PostgreSQL (`sensor_readings_pYYYYMMDD`, one
/// per UTC day). The set of days known to exist saves a catalog round trip per batch.
#[derive(Default)]
pub struct Partitions {
    known: Mutex<HashSet<NaiveDate>>,
}

/// Serialises partition DDL across instances.
const PARTITION_LOCK: i64 = 0x6d61_7368_7061_7274; // "mashpart"

impl Partitions {
    fn name(day: NaiveDate) -> String {
        format!("sensor_readings_p{}", day.format("%Y%m%d"))
    }

    fn forget(&self) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Makes sure a partition exists for each of `days`.
    pub async fn ensure(&self, pool: &sqlx::PgPool, days: &HashSet<NaiveDate>) -> Result<(), DbErr> {
        let missing: Vec<NaiveDate> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            days.iter().filter(|d| !known.contains(d)).copied().collect()
        };
        for day in missing {
            let next = day.succ_opt().ok_or_else(|| DbErr::Custom("date out of range".into()))?;
            let mut tx = pool.begin().await.map_err(from_sqlx)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PARTITION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF sensor_readings \
                 FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
                Self::name(day)
            );
            sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(from_sqlx)?;
            tx.commit().await.map_err(from_sqlx)?;
            self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(day);
        }
        Ok(())
    }

    /// The existing partitions and their days.
    pub async fn list(&self, pool: &sqlx::PgPool) -> Result<Vec<(String, NaiveDate)>, DbErr> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'sensor_readings' AND p.relnamespace = current_schema()::regnamespace \
             ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .map_err(from_sqlx)?;
        Ok(names
            .into_iter()
            .filter_map(|n| {
                let day = NaiveDate::parse_from_str(n.strip_prefix("sensor_readings_p")?, "%Y%m%d").ok()?;
                Some((n, day))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn the_batch_statements_wake_the_queue_channel() {
        let wake = format!("pg_notify('{}', '')", crate::jobs::CHANNEL);
        assert!(PG_INSERT.contains(&wake) && PG_INSERT_RETURNING.contains(&wake));
    }

    #[test]
    fn values_sql_has_one_group_per_row() {
        assert_eq!(
            values_sql("INSERT INTO x VALUES ", 2, " ON CONFLICT DO NOTHING"),
            "INSERT INTO x VALUES (?,?,?,?),(?,?,?,?) ON CONFLICT DO NOTHING"
        );
    }
}
