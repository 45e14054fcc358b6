//! Typed configuration, read from the environment (and `.env`) and validated once at startup.
//!
//! A bad value stops the start with one line naming the variable and what is wrong
//! (`ConfigError`), so operators never chase a misconfiguration through a stack trace.

use std::{collections::HashMap, fmt, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

/// A value that must never reach a log line. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

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

/// CORS: which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin, and therefore never with credentials.
    Any,
    /// An explicit list; credentials are allowed for these.
    List(Vec<String>),
}

/// HTTP server settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: IpAddr,
    pub port: u16,
    pub allowed_origins: AllowedOrigins,
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// `Strict-Transport-Security` max-age; `None` leaves the header off (plain-HTTP deployments).
    pub hsts_max_age: Option<u64>,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// Development (the default) creates missing keys in the data directory; production refuses to
/// start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Identity settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Ed25519 PKCS#8 PEM; required in production.
    pub jwt_private_key: Option<Secret>,
    /// The previous key (public or private PEM), still accepted for verification.
    pub jwt_previous_key: Option<Secret>,
    /// 32 bytes, base64: encrypts TOTP secrets at rest. Required in production.
    pub mfa_encryption_key: Option<Secret>,
    /// Base of links in emails, e.g. `https://app.example.com`.
    pub public_url: String,
    /// Failed password logins per account within `lockout_window` that lock it.
    pub lockout_threshold: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
    /// Requests per minute per client IP on the sign-in routes.
    pub ip_rate_per_minute: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// How often revocations are re-read from the database (a safety net beside Redis).
    pub revocation_sync: Duration,
    /// External identity provider whose ID tokens `/auth/oidc/exchange` accepts.
    pub oidc: Option<OidcConfig>,
    /// Seed admin (read by `mash seed`).
    pub seed_admin_email: Option<String>,
    pub seed_admin_password: Option<Secret>,
}

/// An OpenID Connect provider (Firebase Auth, Google, Auth0, Keycloak…).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
}

/// Telemetry ingestion, storage and presence.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// A device is `offline` when its last contact is older than this.
    pub offline_after: Duration,
    /// Readings older than this many days are removed (PostgreSQL drops whole day partitions);
    /// `None` keeps them.
    pub retention_days: Option<u32>,
    /// How far back a reading's `ts` may be (never further than retention).
    pub backfill: Duration,
    /// How far ahead of the server clock a reading's `ts` may be.
    pub max_future: Duration,
    /// Body limit of `POST /telemetry/batch` (5000 readings need more than the default limit).
    pub batch_body_limit: usize,
    /// How often partitions are created ahead and retention runs.
    pub maintenance_every: Duration,
    /// The MQTT subscriber, when `MQTT_URL` is set.
    pub mqtt: Option<MqttConfig>,
    /// Shared secret the broker sends to `/mqtt/auth` and `/mqtt/acl`; without it those hooks answer 404.
    pub mqtt_auth_secret: Option<Secret>,
}

/// The broker the server subscribes to.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Stable across restarts, so the broker keeps the session (and queued messages) while
    /// the server is away. Every instance needs its own.
    pub client_id: String,
    /// With several instances: subscribe as `$share/<group>/…` so each message goes to one.
    pub shared_group: Option<String>,
}

/// Which payment provider creates payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentProviderKind {
    /// Fully local: payments are confirmed with `POST /payments/{id}/sandbox-confirm`.
    Sandbox,
    /// Stripe PaymentIntents, confirmed by Stripe's signed webhooks.
    Stripe,
}

/// The job queue's workers.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once by this process; 0 means `serve` runs no workers (run `mash worker`).
    pub concurrency: usize,
    /// How often idle workers look for due jobs when no wake-up came.
    pub poll_interval: Duration,
    /// Dead jobs and delivery records are kept this long.
    pub dead_retention_days: u32,
}

/// Alert severities, lowest first: the one enum of the alerts' `severity` columns.
pub use crate::alerts::entity::Severity;

/// A Google service account (the JSON key file), for FCM.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: Secret,
    pub private_key_id: Option<String>,
}

/// Push through the FCM HTTP v1 API.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    pub account: ServiceAccount,
    pub project_id: String,
    /// `https://fcm.googleapis.com` unless pointed elsewhere (tests: a local fake).
    pub api_base: String,
    /// The OAuth2 token endpoint the JWT-bearer grant goes to.
    pub token_uri: String,
}

/// Alert rules and notifications.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// How often stale-device rules are checked.
    pub stale_check_every: Duration,
    /// How long an instance trusts its cached copy of a grower's rules (writes on this instance,
    /// and on others when Redis is configured, refresh it at once).
    pub rule_cache_ttl: Duration,
    /// Alerts at or above this severity are mailed to the grower's members; `None` mails none.
    pub email_min_severity: Option<Severity>,
    /// Alerts at or above this severity are pushed (critical by default); `None` pushes none.
    pub push_min_severity: Option<Severity>,
    pub fcm: Option<FcmConfig>,
    /// Let grower webhooks target loopback and private addresses (tests, closed networks).
    pub webhook_allow_private: bool,
}

/// Catalogue, orders and payments.
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// ISO 4217 code of every price and order (upper case).
    pub currency: String,
    /// How long a cached catalogue read lives at most. Writes on this instance invalidate at
    /// once, and with Redis on every instance; the TTL only bounds a lost invalidation message.
    pub cache_ttl: Duration,
    /// Entries (product pages and list pages) the catalogue cache holds.
    pub cache_capacity: u64,
    /// How long an `Idempotency-Key` and its stored response are kept.
    pub idempotency_ttl: Duration,
    pub payment_provider: PaymentProviderKind,
    pub stripe_secret_key: Option<Secret>,
    /// `whsec_…`: verifies `Stripe-Signature`. Without it, Stripe webhooks answer 404.
    pub stripe_webhook_secret: Option<Secret>,
    pub stripe_api_base: String,
    /// Largest accepted difference between a webhook's signed timestamp and our clock.
    pub webhook_tolerance: Duration,
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

/// Realtime connections (WebSocket and SSE): keep-alive, timeouts, queues and replay.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Server pings (WebSocket) and keep-alive comments (SSE) go out this often.
    pub ping_interval: Duration,
    /// A WebSocket from which nothing arrived for this long is closed as dead.
    pub idle_timeout: Duration,
    /// Time for the first `auth` message of a connection without a token in its URL.
    pub auth_timeout: Duration,
    /// Time for a new `auth` message after `auth_expired`.
    pub auth_grace: Duration,
    /// Outbound messages a connection may fall behind before it is closed as too slow.
    pub queue: usize,
    /// Events held per path for resume.
    pub replay_events: usize,
    /// How long they are held (and a path's buffer after its last subscriber left).
    pub replay_window: Duration,
    /// Paths one connection may subscribe to.
    pub max_subscriptions: usize,
}

/// One line naming the variable and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn bad(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { var, problem: problem.into() }
}

/// Reads variables from a map, so tests can build a config without touching the process env.
struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| bad(var, format!("expected {expected}, got {raw:?}"))),
        }
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(bad(var, format!("expected true or false, got {other:?}"))),
        }
    }

    fn seconds(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(var, default as f64, "a number of seconds")?;
        if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
            return Err(bad(var, format!("expected a number of seconds between 0 and 86400, got {secs}")));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

fn telemetry_config(env: &Env) -> Result<TelemetryConfig, ConfigError> {
    let retention_days = match env.get("TELEMETRY_RETENTION_DAYS") {
        None => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(d) if (1..=36_500).contains(&d) => Some(d),
            _ => return Err(bad("TELEMETRY_RETENTION_DAYS", format!("expected 1..=36500 days, got {raw:?}"))),
        },
    };
    let backfill_days: u32 = env.parse("TELEMETRY_BACKFILL_DAYS", 30, "a number of days")?;
    if !(1..=36_500).contains(&backfill_days) {
        return Err(bad("TELEMETRY_BACKFILL_DAYS", "expected 1..=36500"));
    }
    let backfill_days = retention_days.map_or(backfill_days, |r| backfill_days.min(r));
    let batch_body_limit: usize = env.parse("TELEMETRY_BODY_LIMIT_BYTES", 8 * 1024 * 1024, "a number of bytes")?;
    if !(64 * 1024..=256 * 1024 * 1024).contains(&batch_body_limit) {
        return Err(bad("TELEMETRY_BODY_LIMIT_BYTES", "expected 65536..=268435456"));
    }
    let mqtt = match env.get("MQTT_URL") {
        None => None,
        Some(raw) => {
            let u = url::Url::parse(raw).map_err(|e| bad("MQTT_URL", format!("not a URL: {e}")))?;
            let tls = match u.scheme() {
                "mqtt" | "tcp" => false,
                "mqtts" | "ssl" => true,
                other => return Err(bad("MQTT_URL", format!("expected mqtt:// or mqtts://, got {other}://"))),
            };
            let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("MQTT_URL", "has no host"))?;
            let client_id = env.get("MQTT_CLIENT_ID").unwrap_or("mash-ingest").to_string();
            if client_id.len() > 64 {
                return Err(bad("MQTT_CLIENT_ID", "must be at most 64 characters"));
            }
            Some(MqttConfig {
                host: host.trim_matches(['[', ']']).to_string(),
                port: u.port().unwrap_or(if tls { 8883 } else { 1883 }),
                tls,
                username: (!u.username().is_empty()).then(|| u.username().to_string()),
                password: u.password().map(Secret::new),
                client_id,
                shared_group: env.get("MQTT_SHARED_GROUP").map(str::to_owned),
            })
        }
    };
    Ok(TelemetryConfig {
        offline_after: env.seconds("DEVICE_OFFLINE_AFTER_SECS", 300)?,
        retention_days,
        backfill: Duration::from_secs(u64::from(backfill_days) * 86_400),
        max_future: env.seconds("TELEMETRY_MAX_FUTURE_SECS", 3600)?,
        batch_body_limit,
        maintenance_every: env.seconds("TELEMETRY_MAINTENANCE_SECS", 3600)?,
        mqtt,
        mqtt_auth_secret: env.get("MQTT_AUTH_SECRET").map(Secret::new),
    })
}

fn shop_config(env: &Env) -> Result<ShopConfig, ConfigError> {
    let currency = env.get("SHOP_CURRENCY").unwrap_or("USD").to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad("SHOP_CURRENCY", format!("expected a 3-letter ISO 4217 code, got {currency:?}")));
    }
    let payment_provider = match env.get("PAYMENT_PROVIDER").map(str::to_ascii_lowercase).as_deref() {
        None | Some("sandbox") => PaymentProviderKind::Sandbox,
        Some("stripe") => PaymentProviderKind::Stripe,
        Some(other) => return Err(bad("PAYMENT_PROVIDER", format!("expected sandbox or stripe, got {other:?}"))),
    };
    let stripe_secret_key = env.get("STRIPE_SECRET_KEY").map(Secret::new);
    if payment_provider == PaymentProviderKind::Stripe && stripe_secret_key.is_none() {
        return Err(bad("STRIPE_SECRET_KEY", "required when PAYMENT_PROVIDER=stripe"));
    }
    let stripe_api_base =
        env.get("STRIPE_API_BASE").unwrap_or("https://api.stripe.com").trim_end_matches('/').to_string();
    let parsed = url::Url::parse(&stripe_api_base).map_err(|e| bad("STRIPE_API_BASE", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad("STRIPE_API_BASE", "expected an https:// URL"));
    }
    let cache_capacity: u64 = env.parse("CATALOGUE_CACHE_ENTRIES", 10_000, "a number of entries")?;
    Ok(ShopConfig {
        currency,
        cache_ttl: env.seconds("CATALOGUE_CACHE_TTL_SECS", 60)?,
        cache_capacity,
        idempotency_ttl: env.seconds("IDEMPOTENCY_TTL_SECS", 86_400)?,
        payment_provider,
        stripe_secret_key,
        stripe_webhook_secret: env.get("STRIPE_WEBHOOK_SECRET").map(Secret::new),
        stripe_api_base,
        webhook_tolerance: env.seconds("WEBHOOK_TOLERANCE_SECS", 300)?,
    })
}

fn jobs_config(env: &Env) -> Result<JobsConfig, ConfigError> {
    let concurrency: usize = env.parse("JOB_CONCURRENCY", 4, "a whole number")?;
    if concurrency > 256 {
        return Err(bad("JOB_CONCURRENCY", "expected 0..=256"));
    }
    let poll_ms: u64 = env.parse("JOB_POLL_MS", 1000, "a number of milliseconds")?;
    if !(10..=60_000).contains(&poll_ms) {
        return Err(bad("JOB_POLL_MS", "expected 10..=60000"));
    }
    let dead_retention_days: u32 = env.parse("JOB_DEAD_RETENTION_DAYS", 30, "a number of days")?;
    if !(1..=3650).contains(&dead_retention_days) {
        return Err(bad("JOB_DEAD_RETENTION_DAYS", "expected 1..=3650"));
    }
    Ok(JobsConfig { concurrency, poll_interval: Duration::from_millis(poll_ms), dead_retention_days })
}

fn realtime_config(env: &Env) -> Result<RealtimeConfig, ConfigError> {
    let ranged = |var: &'static str, default: usize, range: std::ops::RangeInclusive<usize>| {
        let n: usize = env.parse(var, default, "a whole number")?;
        if range.contains(&n) { Ok(n) } else { Err(bad(var, format!("expected {}..={}", range.start(), range.end()))) }
    };
    let ping_interval = env.seconds("REALTIME_PING_SECS", 10)?;
    let idle_timeout = env.seconds("REALTIME_IDLE_TIMEOUT_SECS", 30)?;
    if idle_timeout <= ping_interval {
        return Err(bad("REALTIME_IDLE_TIMEOUT_SECS", "must be longer than REALTIME_PING_SECS"));
    }
    Ok(RealtimeConfig {
        ping_interval,
        idle_timeout,
        auth_timeout: env.seconds("REALTIME_AUTH_TIMEOUT_SECS", 10)?,
        auth_grace: env.seconds("REALTIME_AUTH_GRACE_SECS", 60)?,
        queue: ranged("REALTIME_QUEUE", 256, 1..=65_536)?,
        replay_events: ranged("REALTIME_REPLAY_EVENTS", 256, 1..=100_000)?,
        replay_window: env.seconds("REALTIME_REPLAY_SECS", 300)?,
        max_subscriptions: ranged("REALTIME_MAX_SUBSCRIPTIONS", 100, 1..=10_000)?,
    })
}

fn http_url(var: &'static str, raw: &str) -> Result<String, ConfigError> {
    let parsed = url::Url::parse(raw).map_err(|e| bad(var, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad(var, "expected an https:// URL"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

fn fcm_config(env: &Env) -> Result<Option<FcmConfig>, ConfigError> {
    let (var, raw) = match (env.get("FCM_SERVICE_ACCOUNT_JSON"), env.get("FCM_SERVICE_ACCOUNT_FILE")) {
        (Some(json), _) => ("FCM_SERVICE_ACCOUNT_JSON", json.to_string()),
        (None, Some(path)) => (
            "FCM_SERVICE_ACCOUNT_FILE",
            std::fs::read_to_string(path)
                .map_err(|e| bad("FCM_SERVICE_ACCOUNT_FILE", format!("cannot read {path:?}: {e}")))?,
        ),
        (None, None) => return Ok(None),
    };
    #[derive(serde::Deserialize)]
    struct Key {
        client_email: String,
        private_key: String,
        private_key_id: Option<String>,
        project_id: Option<String>,
        token_uri: Option<String>,
    }
    let key: Key = serde_json::from_str(&raw)
        .map_err(|e| bad(var, format!("not a service account key (client_email, private_key): {e}")))?;
    jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
        .map_err(|e| bad(var, format!("private_key is not an RSA PEM key: {e}")))?;
    let project_id = env
        .get("FCM_PROJECT_ID")
        .map(str::to_owned)
        .or(key.project_id)
        .ok_or_else(|| bad("FCM_PROJECT_ID", "required when the service account has no project_id"))?;
    let token_uri = match env.get("FCM_TOKEN_URI") {
        Some(raw) => http_url("FCM_TOKEN_URI", raw)?,
        None => http_url(var, key.token_uri.as_deref().unwrap_or("https://oauth2.googleapis.com/token"))?,
    };
    Ok(Some(FcmConfig {
        account: ServiceAccount {
            client_email: key.client_email,
            private_key: Secret::new(key.private_key),
            private_key_id: key.private_key_id,
        },
        project_id,
        api_base: http_url("FCM_API_BASE", env.get("FCM_API_BASE").unwrap_or("https://fcm.googleapis.com"))?,
        token_uri,
    }))
}

fn alerts_config(env: &Env) -> Result<AlertsConfig, ConfigError> {
    let severity = |var: &'static str, default: &str| -> Result<Option<Severity>, ConfigError> {
        match env.get(var).unwrap_or(default).to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(None),
            other => Severity::parse(other)
                .map(Some)
                .ok_or_else(|| bad(var, format!("expected info, warning, critical or off, got {other:?}"))),
        }
    };
    Ok(AlertsConfig {
        stale_check_every: env.seconds("ALERT_STALE_CHECK_SECS", 30)?,
        rule_cache_ttl: env.seconds("ALERT_RULE_CACHE_SECS", 30)?,
        email_min_severity: severity("ALERT_EMAIL_MIN_SEVERITY", "critical")?,
        push_min_severity: severity("ALERT_PUSH_MIN_SEVERITY", "critical")?,
        fcm: fcm_config(env)?,
        webhook_allow_private: env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", false)?,
    })
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
        let database = DatabaseConfig {
            url,
            max_connections,
            min_connections,
            acquire_timeout: env.seconds("DB_ACQUIRE_TIMEOUT_SECS", 5)?,
            statement_timeout: env.seconds("DB_STATEMENT_TIMEOUT_SECS", 30)?,
            busy_timeout: env.seconds("SQLITE_BUSY_TIMEOUT_SECS", 5)?,
            connect_wait: env.seconds("DB_CONNECT_WAIT_SECS", 60)?,
        };

        let host = env.parse("HOST", IpAddr::from([0, 0, 0, 0]), "an IP address such as 0.0.0.0 or 127.0.0.1")?;
        let port = env.parse("PORT", 3000u16, "a port number 0..=65535")?;
        let allowed_origins = parse_origins(env.get("ALLOWED_ORIGINS"))?;
        let body_limit: usize = env.parse("HTTP_BODY_LIMIT_BYTES", 1024 * 1024, "a number of bytes")?;
        if body_limit < 1024 {
            return Err(bad("HTTP_BODY_LIMIT_BYTES", "must be at least 1024"));
        }
        let hsts_max_age = match env.get("HSTS_MAX_AGE_SECS") {
            None => None,
            Some(raw) => Some(
                raw.parse::<u64>()
                    .map_err(|_| bad("HSTS_MAX_AGE_SECS", format!("expected a number of seconds, got {raw:?}")))?,
            ),
        };
        let http = HttpConfig {
            host,
            port,
            allowed_origins,
            request_timeout: env.seconds("HTTP_REQUEST_TIMEOUT_SECS", 30)?,
            body_limit,
            hsts_max_age,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECS", 20)?,
        };

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
        let read_secret = |var: &'static str, file_var: &'static str| -> Result<Option<Secret>, ConfigError> {
            match (env.get(var), env.get(file_var)) {
                (Some(v), _) => Ok(Some(Secret::new(v.replace("\\n", "\n")))),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(|v| Some(Secret::new(v)))
                    .map_err(|e| bad(file_var, format!("cannot read {path:?}: {e}"))),
                (None, None) => Ok(None),
            }
        };
        let jwt_private_key = read_secret("JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE")?;
        let mfa_encryption_key = read_secret("MFA_ENCRYPTION_KEY", "MFA_ENCRYPTION_KEY_FILE")?;
        if environment == Environment::Production {
            if jwt_private_key.is_none() {
                return Err(bad("JWT_PRIVATE_KEY", "required when MASH_ENV=production (or set JWT_PRIVATE_KEY_FILE)"));
            }
            if mfa_encryption_key.is_none() {
                return Err(bad("MFA_ENCRYPTION_KEY", "required when MASH_ENV=production (32 bytes, base64)"));
            }
        }
        let access_ttl = env.seconds("ACCESS_TOKEN_TTL_SECS", 900)?;
        let refresh_days: u64 = env.parse("REFRESH_TOKEN_TTL_DAYS", 30, "a number of days")?;
        if !(1..=365).contains(&refresh_days) {
            return Err(bad("REFRESH_TOKEN_TTL_DAYS", "expected 1..=365"));
        }
        let lockout_threshold: u32 = env.parse("LOGIN_LOCKOUT_THRESHOLD", 5, "a whole number")?;
        if !(2..=100).contains(&lockout_threshold) {
            return Err(bad("LOGIN_LOCKOUT_THRESHOLD", "expected 2..=100"));
        }
        let ip_rate_per_minute: u32 = env.parse("AUTH_RATE_LIMIT_PER_MINUTE", 60, "a whole number")?;
        if ip_rate_per_minute == 0 {
            return Err(bad("AUTH_RATE_LIMIT_PER_MINUTE", "must be at least 1"));
        }
        let public_url = env.get("PUBLIC_URL").unwrap_or("http://localhost:3000").trim_end_matches('/').to_string();
        url::Url::parse(&public_url).map_err(|e| bad("PUBLIC_URL", format!("not a URL: {e}")))?;
        let auth = AuthConfig {
            access_ttl,
            refresh_ttl: Duration::from_secs(refresh_days * 86_400),
            jwt_private_key,
            jwt_previous_key: read_secret("JWT_PREVIOUS_KEY", "JWT_PREVIOUS_KEY_FILE")?,
            mfa_encryption_key,
            public_url,
            lockout_threshold,
            lockout_window: env.seconds("LOGIN_LOCKOUT_WINDOW_SECS", 900)?,
            lockout_duration: env.seconds("LOGIN_LOCKOUT_SECS", 900)?,
            ip_rate_per_minute,
            trust_proxy: env.bool("TRUST_PROXY_HEADERS", false)?,
            revocation_sync: env.seconds("REVOCATION_SYNC_SECS", 10)?,
            oidc: match (env.get("OIDC_ISSUER"), env.get("OIDC_AUDIENCE"), env.get("OIDC_JWKS_URL")) {
                (None, None, None) => None,
                (Some(issuer), Some(audience), Some(jwks_url)) => {
                    let parsed =
                        url::Url::parse(jwks_url).map_err(|e| bad("OIDC_JWKS_URL", format!("not a URL: {e}")))?;
                    if !matches!(parsed.scheme(), "https" | "http") {
                        return Err(bad("OIDC_JWKS_URL", "expected an https:// URL"));
                    }
                    Some(OidcConfig { issuer: issuer.into(), audience: audience.into(), jwks_url: jwks_url.into() })
                }
                (None, _, _) => return Err(bad("OIDC_ISSUER", "required with OIDC_AUDIENCE and OIDC_JWKS_URL")),
                (_, None, _) => return Err(bad("OIDC_AUDIENCE", "required with OIDC_ISSUER and OIDC_JWKS_URL")),
                (_, _, None) => return Err(bad("OIDC_JWKS_URL", "required with OIDC_ISSUER and OIDC_AUDIENCE")),
            },
            seed_admin_email: env.get("MASH_SEED_ADMIN_EMAIL").map(str::to_owned),
            seed_admin_password: env.get("MASH_SEED_ADMIN_PASSWORD").map(Secret::new),
        };

        let telemetry = telemetry_config(&env)?;
        let shop = shop_config(&env)?;

        Ok(Config {
            telemetry,
            shop,
            jobs: jobs_config(&env)?,
            alerts: alerts_config(&env)?,
            realtime: realtime_config(&env)?,
            environment,
            auth,
            database,
            http,
            redis_url,
            metrics_token: env.get("METRICS_TOKEN").map(Secret::new),
            smtp_url: env.get("SMTP_URL").map(Secret::new),
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

fn parse_origins(raw: Option<&str>) -> Result<AllowedOrigins, ConfigError> {
    let Some(raw) = raw else {
        return Ok(AllowedOrigins::List(Vec::new()));
    };
    let items: Vec<&str> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.contains(&"*") {
        if items.len() > 1 {
            return Err(bad("ALLOWED_ORIGINS", "`*` cannot be combined with explicit origins"));
        }
        return Ok(AllowedOrigins::Any);
    }
    let mut origins = Vec::with_capacity(items.len());
    for item in items {
        let parsed = url::Url::parse(item).map_err(|_| bad("ALLOWED_ORIGINS", format!("{item:?} is not an origin")))?;
        let is_bare_origin = matches!(parsed.scheme(), "http" | "https")
            && parsed.host().is_some()
            && parsed.path() == "/"
            && parsed.query().is_none()
            && !item.ends_with('/');
        if !is_bare_origin {
            return Err(bad("ALLOWED_ORIGINS", format!("{item:?} is not an origin (expected scheme://host[:port])")));
        }
        origins.push(item.to_string());
    }
    Ok(AllowedOrigins::List(origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
        assert_eq!(cfg(&[("ALLOWED_ORIGINS", "*,https://a.example")]).unwrap_err().var, "ALLOWED_ORIGINS");
        assert_eq!(cfg(&[("ALLOWED_ORIGINS", "https://a.example/path")]).unwrap_err().var, "ALLOWED_ORIGINS");
        assert_eq!(cfg(&[("DB_MAX_CONNECTIONS", "0")]).unwrap_err().var, "DB_MAX_CONNECTIONS");
        assert_eq!(cfg(&[("HTTP_REQUEST_TIMEOUT_SECS", "-1")]).unwrap_err().var, "HTTP_REQUEST_TIMEOUT_SECS");
        let line = cfg(&[("PORT", "99999")]).unwrap_err().to_string();
        assert!(line.starts_with("invalid configuration: PORT:"), "{line}");
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

    #[test]
    fn production_requires_keys() {
        assert_eq!(cfg(&[("MASH_ENV", "production")]).unwrap_err().var, "JWT_PRIVATE_KEY");
        assert_eq!(
            cfg(&[("MASH_ENV", "production"), ("JWT_PRIVATE_KEY", "pem")]).unwrap_err().var,
            "MFA_ENCRYPTION_KEY"
        );
        assert!(cfg(&[("MASH_ENV", "production"), ("JWT_PRIVATE_KEY", "pem"), ("MFA_ENCRYPTION_KEY", "k")]).is_ok());
        let c = cfg(&[("JWT_PRIVATE_KEY", "very-secret-pem")]).unwrap();
        assert!(!format!("{c:?}").contains("very-secret-pem"));
    }

    #[test]
    fn shop_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.shop.currency.as_str(), c.shop.payment_provider), ("USD", PaymentProviderKind::Sandbox));
        assert_eq!(cfg(&[("PAYMENT_PROVIDER", "stripe")]).unwrap_err().var, "STRIPE_SECRET_KEY");
        assert_eq!(cfg(&[("PAYMENT_PROVIDER", "paypal")]).unwrap_err().var, "PAYMENT_PROVIDER");
        assert_eq!(cfg(&[("SHOP_CURRENCY", "EURO")]).unwrap_err().var, "SHOP_CURRENCY");
        let c = cfg(&[("PAYMENT_PROVIDER", "stripe"), ("STRIPE_SECRET_KEY", "sk_test_x"), ("SHOP_CURRENCY", "eur")])
            .unwrap();
        assert_eq!(c.shop.currency, "EUR");
        assert!(!format!("{c:?}").contains("sk_test_x"));
    }

    #[test]
    fn origins_parse() {
        assert_eq!(cfg(&[("ALLOWED_ORIGINS", "*")]).unwrap().http.allowed_origins, AllowedOrigins::Any);
        assert_eq!(
            cfg(&[("ALLOWED_ORIGINS", "https://a.example, http://localhost:5173")]).unwrap().http.allowed_origins,
            AllowedOrigins::List(vec!["https://a.example".into(), "http://localhost:5173".into()])
        );
    }
}
