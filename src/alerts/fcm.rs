//! Push through the FCM HTTP v1 API (`POST {FCM_API_BASE}/v1/projects/{project}/messages:send`).
//!
//! OAuth2 access tokens come from the service account with the JWT-bearer grant (RFC 7523):
//! we sign `{iss: client_email, scope, aud: token_uri, iat, exp}` with the account's RSA key
//! (RS256) and trade it at `token_uri`. The token is cached until a minute before it expires;
//! one refresh at a time.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

use super::entity::{Severity, alert};
use crate::config::FcmConfig;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Why a send failed.
#[derive(Debug, PartialEq, Eq)]
pub enum FcmError {
    /// The token is no longer valid (`UNREGISTERED`, or 404): delete it.
    Unregistered(String),
    /// FCM refused this message (bad request, wrong sender): retrying will not help.
    Rejected(String),
    /// Network, 429, 5xx, or an auth hiccup: retry later.
    Transient(String),
}

/// The notification part of a message.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub title: String,
    pub body: String,
    /// String values only, as FCM requires.
    pub data: std::collections::BTreeMap<String, String>,
    pub high_priority: bool,
}

impl Message {
    pub fn for_alert(a: &alert::Model) -> Self {
        let data = [
            ("type", "alert".to_string()),
            ("alertId", a.id.to_string()),
            ("growerId", a.grower_id.to_string()),
            ("deviceId", a.device_id.to_string()),
            ("ruleId", a.rule_id.to_string()),
            ("metric", a.metric.clone()),
            ("severity", a.severity.as_str().to_string()),
            ("status", a.status.as_str().to_string()),
            ("value", a.value.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            title: format!("{} alert: {}", capitalise(a.severity.as_str()), a.metric),
            body: a.message.clone(),
            data,
            high_priority: a.severity == Severity::Critical,
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The FCM client.
pub struct Fcm {
    http: reqwest::Client,
    config: FcmConfig,
    key: jsonwebtoken::EncodingKey,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Serialize)]
struct Grant<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl Fcm {
    pub fn new(config: FcmConfig) -> anyhow::Result<Self> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(config.account.private_key.expose().as_bytes())
            .map_err(|e| anyhow::anyhow!("invalid configuration: FCM service account private_key: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("mash/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, config, key, token: Mutex::new(None) })
    }

    /// A valid access token, from the cache or a fresh grant.
    async fn access_token(&self) -> Result<String, FcmError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Grant {
            iss: &self.config.account.client_email,
            scope: SCOPE,
            aud: &self.config.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.config.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| FcmError::Rejected(format!("signing the OAuth2 grant failed: {e}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let res = self
            .http
            .post(&self.config.token_uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| FcmError::Transient(format!("OAuth2 token endpoint unreachable: {e}")))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if !status.is_success() {
            // A refused grant is a configuration problem, but it may be a clock skew or an
            // outage too: retried with backoff, and the error says which.
            return Err(FcmError::Transient(format!("OAuth2 token endpoint answered {status}: {body}")));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| FcmError::Transient("OAuth2 answer without access_token".into()))?
            .to_string();
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Sends `message` to one registration token; returns FCM's message name.
    pub async fn send(&self, token: &str, message: &Message) -> Result<String, FcmError> {
        let access = self.access_token().await?;
        let priority = if message.high_priority { "high" } else { "normal" };
        let body = serde_json::json!({
            "message": {
                "token": token,
                "notification": {"title": message.title, "body": message.body},
                "data": message.data,
                "android": {"priority": priority},
                "apns": {"headers": {"apns-priority": if message.high_priority { "10" } else { "5" }}},
            }
        });
        let url = format!("{}/v1/projects/{}/messages:send", self.config.api_base, self.config.project_id);
        let res = self
            .http
            .post(url)
            .bearer_auth(&access)
            .json(&body)
            .send()
            .await
            .map_err(|e| FcmError::Transient(format!("FCM unreachable: {e}")))?;
        let status = res.status();
        let answer: serde_json::Value = res.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(answer["name"].as_str().unwrap_or_default().to_string());
        }
        let code = answer["error"]["details"]
            .as_array()
            .and_then(|d| d.iter().find_map(|x| x["errorCode"].as_str()))
            .or_else(|| answer["error"]["status"].as_str())
            .unwrap_or_default()
            .to_string();
        let why = format!("FCM answered {status} {code}: {}", answer["error"]["message"].as_str().unwrap_or_default());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The cached token was revoked or expired early: drop it, the retry gets a new one.
            *self.token.lock().await = None;
            return Err(FcmError::Transient(why));
        }
        Err(match (status.as_u16(), code.as_str()) {
            (_, "UNREGISTERED") | (404, _) => FcmError::Unregistered(why),
            (429 | 500..=599, _) | (_, "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => FcmError::Transient(why),
            (400, "INVALID_ARGUMENT") if answer.to_string().contains("registration token") => {
                FcmError::Unregistered(why)
            }
            _ => FcmError::Rejected(why),
        })
    }
}
