//! Typed configuration, read from the environment (and `.env`) and validated once at startup.
//!
//! A bad value stops the start with one line naming the variable and what is wrong
//! (`ConfigError`), so operators never chase a misconfiguration through a stack trace. Each
//! section reads its own variables in its own file; this one reads the process-wide ones and
//! puts the sections together.

use std::{collections::HashMap, path::PathBuf};

mod alerts;
mod auth;
mod database;
mod env;
mod http;
mod jobs;
mod realtime;
mod shop;
mod telemetry;

pub use alerts::{AlertsConfig, FcmConfig, ServiceAccount, Severity};
pub use auth::{AuthConfig, OidcConfig};
pub use database::{DatabaseConfig, DatabaseUrl, redact_url};
pub use env::{ConfigError, Secret};
pub use http::{AllowedOrigins, HttpConfig};
pub use jobs::JobsConfig;
pub use realtime::RealtimeConfig;
pub use shop::{PaymentProviderKind, ShopConfig};
pub use telemetry::{MqttConfig, TelemetryConfig};

use env::{Env, bad};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Development (the default) creates missing keys in the data directory; production refuses to
/// start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Everything the process reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub redis_url: Option<Secret>,
    /// `smtp://user:pass@host:587` (STARTTLS with `?tls=required`) or `smtps://…`; without it,
    /// mail is written to the log.
    pub smtp_url: Option<Secret>,
    /// The `From:` of outgoing mail.
    pub mail_from: String,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Directory for local state (SQLite file, development keys).
    pub data_dir: PathBuf,
    /// Apply pending migrations when `serve` starts.
    pub auto_migrate: bool,
    pub environment: Environment,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
    pub shop: ShopConfig,
    pub jobs: JobsConfig,
    pub alerts: AlertsConfig,
    pub realtime: RealtimeConfig,
}

impl Config {
    /// Loads `.env` (when present) and reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is reported rather than ignored.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            return Err(bad(".env", e.to_string()));
        }
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars, std::io::IsTerminal::is_terminal(&std::io::stdout()))
    }

    /// Builds the configuration from explicit variables. `stdout_is_tty` picks the default log format.
    pub fn from_map(vars: &HashMap<String, String>, stdout_is_tty: bool) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let data_dir = PathBuf::from(env.get("MASH_DATA_DIR").unwrap_or("./data"));
        let database = DatabaseConfig::from_env(&env, &data_dir)?;
        let http = HttpConfig::from_env(&env)?;
        let redis_url = match env.get("REDIS_URL") {
            None => None,
            Some(raw) => {
                if !(raw.starts_with("redis://") || raw.starts_with("rediss://")) {
                    return Err(bad("REDIS_URL", "expected a redis:// or rediss:// URL"));
                }
                Some(Secret::new(raw))
            }
        };
        let log_format = match env.get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
            None if stdout_is_tty => LogFormat::Text,
            None => LogFormat::Json,
            Some("json") => LogFormat::Json,
            Some("text" | "pretty") => LogFormat::Text,
            Some(other) => return Err(bad("LOG_FORMAT", format!("expected json or text, got {other:?}"))),
        };
        let log_level = env.get("RUST_LOG").unwrap_or("info,sqlx=warn,sea_orm=warn").to_string();
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| bad("RUST_LOG", e.to_string()))?;
        let environment = match env.get("MASH_ENV").map(str::to_ascii_lowercase).as_deref() {
            None | Some("development" | "dev") => Environment::Development,
            Some("production" | "prod") => Environment::Production,
            Some(other) => return Err(bad("MASH_ENV", format!("expected development or production, got {other:?}"))),
        };
        let auth = AuthConfig::from_env(&env, environment)?;
        Ok(Config {
            telemetry: TelemetryConfig::from_env(&env)?,
            shop: ShopConfig::from_env(&env)?,
            jobs: JobsConfig::from_env(&env)?,
            alerts: AlertsConfig::from_env(&env)?,
            realtime: RealtimeConfig::from_env(&env)?,
            environment,
            auth,
            database,
            http,
            redis_url,
            metrics_token: env.opt_secret("METRICS_TOKEN"),
            smtp_url: env.opt_secret("SMTP_URL"),
            mail_from: {
                let from = env.get("MAIL_FROM").unwrap_or("Mash <no-reply@localhost>").to_string();
                from.parse::<lettre::message::Mailbox>()
                    .map_err(|e| bad("MAIL_FROM", format!("not a mailbox: {e}")))?;
                from
            },
            log_format,
            log_level,
            data_dir,
            auto_migrate: env.bool("MASH_AUTO_MIGRATE", true)?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration from these variables only.
    pub(crate) fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_map(&map, false)
    }

    #[test]
    fn defaults_are_zero_setup() {
        let c = cfg(&[]).unwrap();
        assert!(c.database.url.is_sqlite());
        assert!(c.database.url.as_str().contains("data/mash.db"));
        assert_eq!(c.http.port, 3000);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(Config::from_map(&HashMap::new(), true).unwrap().log_format, LogFormat::Text);
        assert_eq!(c.http.allowed_origins, AllowedOrigins::List(vec![]));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(cfg(&[("PORT", "abc")]).unwrap_err().var, "PORT");
        assert_eq!(cfg(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var, "DATABASE_URL");
        assert_eq!(cfg(&[("LOG_FORMAT", "xml")]).unwrap_err().var, "LOG_FORMAT");
        assert_eq!(cfg(&[("DB_MAX_CONNECTIONS", "0")]).unwrap_err().var, "DB_MAX_CONNECTIONS");
        assert_eq!(cfg(&[("HTTP_REQUEST_TIMEOUT_SECS", "-1")]).unwrap_err().var, "HTTP_REQUEST_TIMEOUT_SECS");
        let line = cfg(&[("PORT", "99999")]).unwrap_err().to_string();
        assert!(line.starts_with("invalid configuration: PORT:"), "{line}");
    }

    #[test]
    fn ranges_say_what_they_allow() {
        let err = cfg(&[("JOB_POLL_MS", "5")]).unwrap_err();
        assert_eq!((err.var, err.problem.as_str()), ("JOB_POLL_MS", "expected 10..=60000"));
        let err = cfg(&[("TELEMETRY_BODY_LIMIT_BYTES", "1")]).unwrap_err();
        assert_eq!(err.problem, "expected 65536..=268435456");
        let err = cfg(&[("REALTIME_QUEUE", "x")]).unwrap_err();
        assert_eq!(err.problem, "expected a whole number, got \"x\"");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = cfg(&[
            ("DATABASE_URL", "postgres://app:hunter2@db.internal/mash"),
            ("REDIS_URL", "redis://:sekrit@cache:6379"),
        ])
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        assert!(dbg.contains("db.internal"));
    }
}
