//! Telemetry: how long readings are kept and how far back or ahead they may be, the batch body
//! limit, presence, and the MQTT subscriber.

use std::time::Duration;

use super::env::{ConfigError, Env, Secret, bad};

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

impl TelemetryConfig {
    pub(super) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let retention_days = match env.get("TELEMETRY_RETENTION_DAYS") {
            None => None,
            Some(raw) => match raw.parse::<u32>() {
                Ok(d) if (1..=36_500).contains(&d) => Some(d),
                _ => return Err(bad("TELEMETRY_RETENTION_DAYS", format!("expected 1..=36500 days, got {raw:?}"))),
            },
        };
        let backfill_days: u32 = env.ranged("TELEMETRY_BACKFILL_DAYS", 30, 1..=36_500, "a number of days")?;
        let backfill_days = retention_days.map_or(backfill_days, |r| backfill_days.min(r));
        let batch_body_limit: usize = env.ranged(
            "TELEMETRY_BODY_LIMIT_BYTES",
            8 * 1024 * 1024,
            64 * 1024..=256 * 1024 * 1024,
            "a number of bytes",
        )?;
        Ok(Self {
            offline_after: env.seconds("DEVICE_OFFLINE_AFTER_SECS", 300)?,
            retention_days,
            backfill: Duration::from_secs(u64::from(backfill_days) * 86_400),
            max_future: env.seconds("TELEMETRY_MAX_FUTURE_SECS", 3600)?,
            batch_body_limit,
            maintenance_every: env.seconds("TELEMETRY_MAINTENANCE_SECS", 3600)?,
            mqtt: MqttConfig::from_env(env)?,
            mqtt_auth_secret: env.opt_secret("MQTT_AUTH_SECRET"),
        })
    }
}

impl MqttConfig {
    /// From `MQTT_URL` (`mqtt://` or `mqtts://`, credentials in the URL), when it is set.
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(raw) = env.get("MQTT_URL") else { return Ok(None) };
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
        Ok(Some(Self {
            host: host.trim_matches(['[', ']']).to_string(),
            port: u.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            username: (!u.username().is_empty()).then(|| u.username().to_string()),
            password: u.password().map(Secret::new),
            client_id,
            shared_group: env.get("MQTT_SHARED_GROUP").map(str::to_owned),
        }))
    }
}
