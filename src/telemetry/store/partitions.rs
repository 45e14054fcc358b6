//! Keeping the series bounded: the day partitions of `sensor_readings` on PostgreSQL
//! (`sensor_readings_pYYYYMMDD`, one per UTC day, created ahead of the readings) and retention.
//! SQLite has no partitions: there retention deletes in chunks.

use std::{collections::HashSet, sync::Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    DatabaseBackend, DbErr,
    sqlx::{self, AssertSqlSafe},
};

use crate::db::{Db, error::from_sqlx};

/// Removes readings older than `cutoff`. PostgreSQL drops every day partition that ends at
/// or before the cutoff's day (whole days only, never a partial delete); SQLite deletes in
/// chunks so the write lock is never held for long. Returns what was removed, for the log.
pub async fn retain(db: &Db, partitions: &Partitions, cutoff: DateTime<Utc>) -> Result<String, DbErr> {
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
                let _turn = db.gate().await;
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

    pub(super) fn forget(&self) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A write failed because a partition it needed is gone (PostgreSQL's check violation:
    /// no partition of the relation for the row).
    pub(super) fn is_missing(e: &DbErr) -> bool {
        let Some(sqlx::Error::Database(db)) = (match e {
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => {
                Some(e.as_ref())
            }
            _ => None,
        }) else {
            return false;
        };
        db.code().as_deref() == Some("23514")
    }

    /// Makes sure a partition exists for each of `days` (nothing to do on SQLite).
    pub async fn ensure(&self, db: &Db, days: &HashSet<NaiveDate>) -> Result<(), DbErr> {
        if db.backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let pool = db.get_postgres_connection_pool();
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
