//! Alerts: how often stale rules are checked, the rule cache, which severities are mailed and
//! pushed, FCM (the service account key is checked at start), and webhook targets.

use std::time::Duration;

use super::env::{ConfigError, Env, Secret, bad, http_url};

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

impl AlertsConfig {
    pub(super) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let severity = |var: &'static str, default: &str| -> Result<Option<Severity>, ConfigError> {
            match env.get(var).unwrap_or(default).to_ascii_lowercase().as_str() {
                "off" | "none" => Ok(None),
                other => Severity::parse(other)
                    .map(Some)
                    .ok_or_else(|| bad(var, format!("expected info, warning, critical or off, got {other:?}"))),
            }
        };
        Ok(Self {
            stale_check_every: env.seconds("ALERT_STALE_CHECK_SECS", 30)?,
            rule_cache_ttl: env.seconds("ALERT_RULE_CACHE_SECS", 30)?,
            email_min_severity: severity("ALERT_EMAIL_MIN_SEVERITY", "critical")?,
            push_min_severity: severity("ALERT_PUSH_MIN_SEVERITY", "critical")?,
            fcm: FcmConfig::from_env(env)?,
            webhook_allow_private: env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", false)?,
        })
    }
}

impl FcmConfig {
    /// From `FCM_SERVICE_ACCOUNT_JSON` or `FCM_SERVICE_ACCOUNT_FILE`, when either is set.
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
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
        Ok(Some(Self {
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
}
