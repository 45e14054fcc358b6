//! `DATABASE_URL` and the pool: SQLite by default (a file in the data directory), or
//! PostgreSQL. Credentials in the URL never reach a log line.

use std::{fmt, path::Path, time::Duration};

use super::env::{ConfigError, Env, bad};

/// Where the data lives. Credentials inside the URL are redacted in `Debug`.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// Replaces the password of a URL with `***` so it can be logged.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

/// Database settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    /// Pool size. SQLite gets a small pool of readers beside its single writer lock.
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every pooled connection.
    pub statement_timeout: Duration,
    /// SQLite `busy_timeout`.
    pub busy_timeout: Duration,
    /// How long `serve` keeps retrying a database that is not up yet before giving up.
    pub connect_wait: Duration,
}

impl DatabaseConfig {
    pub(super) fn from_env(env: &Env, data_dir: &Path) -> Result<Self, ConfigError> {
        let url = match env.get("DATABASE_URL") {
            None => format!("sqlite://{}?mode=rwc", data_dir.join("mash.db").display()),
            Some(raw) => raw.to_string(),
        };
        let url = DatabaseUrl(url);
        if !url.is_sqlite() && !url.is_postgres() {
            return Err(bad(
                "DATABASE_URL",
                format!("expected a sqlite:// or postgres:// URL, got {:?}", redact_url(url.as_str())),
            ));
        }
        if url.is_postgres() {
            url::Url::parse(url.as_str()).map_err(|e| bad("DATABASE_URL", format!("not a valid URL: {e}")))?;
        }
        let default_pool = if url.is_sqlite() { 8 } else { 16 };
        let max_connections: u32 = env.parse("DB_MAX_CONNECTIONS", default_pool, "a positive integer")?;
        if max_connections == 0 || max_connections > 1000 {
            return Err(bad("DB_MAX_CONNECTIONS", format!("expected 1..=1000, got {max_connections}")));
        }
        let min_connections: u32 = env.parse("DB_MIN_CONNECTIONS", 1.min(max_connections), "a non-negative integer")?;
        if min_connections > max_connections {
            return Err(bad("DB_MIN_CONNECTIONS", "must not exceed DB_MAX_CONNECTIONS"));
        }
        Ok(Self {
            url,
            max_connections,
            min_connections,
            acquire_timeout: env.seconds("DB_ACQUIRE_TIMEOUT_SECS", 5)?,
            statement_timeout: env.seconds("DB_STATEMENT_TIMEOUT_SECS", 30)?,
            busy_timeout: env.seconds("SQLITE_BUSY_TIMEOUT_SECS", 5)?,
            connect_wait: env.seconds("DB_CONNECT_WAIT_SECS", 60)?,
        })
    }
}
