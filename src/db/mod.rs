//! The one store: a SeaORM connection over an sqlx pool, on SQLite or PostgreSQL.
//!
//! Everything backend-specific about *connecting* lives here: SQLite PRAGMAs, PostgreSQL
//! timeouts, and waiting for a database that is not up yet.

use std::{str::FromStr, time::Duration};

use sea_orm::{
    DatabaseBackend, DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector,
    sqlx::{
        self,
        pool::PoolOptions,
        postgres::PgConnectOptions,
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
    },
};

use crate::config::{DatabaseConfig, redact_url};

pub mod batch;
pub mod error;
mod owner;

pub use owner::{Db, WriteTxn, for_share, for_update};

/// Opens the pool, retrying with backoff until `connect_wait` has passed.
///
/// Each failed try logs one line, so an operator sees why the service is not up yet,
/// and a database that starts a few seconds after us does not crash-loop the process.
pub async fn connect(cfg: &DatabaseConfig) -> anyhow::Result<DatabaseConnection> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        match try_connect(cfg).await {
            Ok(db) => {
                if attempt > 1 {
                    tracing::info!(attempt, "database connection established");
                }
                return Ok(db);
            }
            Err(e) if started.elapsed() + delay < cfg.connect_wait && is_retryable(&e) => {
                tracing::warn!(
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    url = %redact_url(cfg.url.as_str()),
                    error = %e,
                    "database not reachable yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot connect to the database at {} after {attempt} attempt(s): {e}",
                    redact_url(cfg.url.as_str())
                ));
            }
        }
    }
}

/// Configuration mistakes (a bad URL, a missing SQLite directory we could not create) are not
/// worth waiting for; network and server-side start-up errors are.
fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Database(_))
}

/// Pools skip sqlx's ping-before-acquire: sqlx 0.9 already pings every connection when it
/// goes *back* to the pool (dropping broken ones, and the only place a reply left unread by a
/// cancelled query is caught), so a second ping on the way out would cost a round trip per
/// request for nothing. A connection that dies while idle fails its next statement, which
/// maps to 503, and is replaced.
async fn try_connect(cfg: &DatabaseConfig) -> Result<DatabaseConnection, sqlx::Error> {
    if cfg.url.is_sqlite() {
        let opts = sqlite_options(cfg)?;
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let pool = pool_options(cfg).connect_with(opts).await?;
        Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
    } else {
        let opts = PgConnectOptions::from_str(cfg.url.as_str())?
            .application_name("mash")
            .options([("statement_timeout", format!("{}", cfg.statement_timeout.as_millis()))]);
        // One direct connection first: it fails fast (the pool would retry internally until its
        // acquire timeout), so each try of the wait loop is short and gets its own log line.
        let probe = tokio::time::timeout(cfg.acquire_timeout, sqlx::ConnectOptions::connect(&opts))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        sqlx::Connection::close(probe).await.ok();
        let pool = pool_options(cfg).connect_with(opts).await?;
        Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
    }
}

/// The pool's sizes and timeouts, the same for either backend.
fn pool_options<DB: sqlx::Database>(cfg: &DatabaseConfig) -> PoolOptions<DB> {
    PoolOptions::new()
        .test_before_acquire(false)
        .max_connections(cfg.max_connections)
        .min_connections(cfg.min_connections)
        .acquire_timeout(cfg.acquire_timeout)
}

/// SQLite PRAGMAs, applied by sqlx on every new connection of the pool.
///
/// - `foreign_keys=ON`: SQLite leaves them off by default.
/// - `journal_mode=WAL`: readers do not block the writer.
/// - `synchronous=FULL`: the WAL is fsynced at every commit, so a write acknowledged to a
///   client survives `kill -9` *and* power loss. (`NORMAL` would survive a process crash but
///   could drop the last commits on power loss; we do not trade that away by default.)
/// - `busy_timeout`: writers queue behind the single write lock instead of failing at once.
fn sqlite_options(cfg: &DatabaseConfig) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(cfg.url.as_str())?
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(cfg.busy_timeout)
        .pragma("temp_store", "memory"))
}

/// One trivial round trip, for readiness checks: a protocol-level ping (PostgreSQL `Sync`,
/// answered `ReadyForQuery`), the cheapest exchange that proves the server answers.
pub async fn ping(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    db.ping().await
}

/// The backend behind a connection, for the few places that pick a backend-specific statement.
pub fn backend(db: &DatabaseConnection) -> DatabaseBackend {
    sea_orm::ConnectionTrait::get_database_backend(db)
}
