//! A grower's alert webhook: `PUT|GET|DELETE /growers/{id}/alert-webhook` (owners and ADMIN),
//! and the signed POSTs.
//!
//! Each POST carries `Mash-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, keyed
//! with the webhook's secret (shown once, when the webhook is created or its secret rotated),
//! in the style of `Stripe-Signature`: a receiver recomputes it, compares in constant time and
//! refuses timestamps older than a few minutes. `Mash-Event-Id` is stable across retries.
//!
//! Targets are checked against server-side request forgery: unless
//! `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`, a URL whose host is (or resolves to) a loopback,
//! private, link-local or otherwise non-public address is refused, at configuration time and
//! again at every connection (the resolver itself filters, so DNS rebinding does not help).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use garde::Validate;
use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::entity::webhook;
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, Json, Path, Valid},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_webhook, get_webhook, delete_webhook))
}

/// The hex signature of `t.body`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    hex::encode(crate::util::timestamped_mac(secret, t, body))
}

/// Whether an address is one the public internet can reach.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                || v4.octets()[0] >= 224)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// A resolver that drops non-public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err(format!("{host} does not resolve to a public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client of webhook deliveries.
pub struct Sender {
    http: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mash-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self { http: builder.build()?, allow_private })
    }

    /// Checks a URL a grower wants to use.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an http:// or https:// URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials".into());
        }
        match url.host() {
            None => return Err("has no host".into()),
            Some(url::Host::Ipv4(ip)) if !self.allow_private && !is_public(IpAddr::V4(ip)) => {
                return Err("must not point at a private or loopback address".into());
            }
            Some(url::Host::Ipv6(ip)) if !self.allow_private && !is_public(IpAddr::V6(ip)) => {
                return Err("must not point at a private or loopback address".into());
            }
            Some(url::Host::Domain(d)) if !self.allow_private && (d == "localhost" || d.ends_with(".localhost")) => {
                return Err("must not point at a private or loopback address".into());
            }
            _ => {}
        }
        Ok(url)
    }

    /// Posts a signed event. `Err` carries a readable reason (status or transport error).
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        event_id: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        // IP-literal hosts do not go through the resolver: check them here too.
        self.check_url(url)?;
        let t = now.timestamp();
        let res = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Mash-Signature", format!("t={t},v1={}", sign(secret, t, body.as_bytes())))
            .header("Mash-Event-Id", event_id.to_string())
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("could not deliver: {e}"))?;
        if res.status().is_success() { Ok(()) } else { Err(format!("the endpoint answered {}", res.status())) }
    }
}

/// The webhook's secret, decrypted.
pub fn open_secret(state: &AppState, hook: &webhook::Model) -> anyhow::Result<String> {
    let plain = state.auth.mfa.open(hook.grower_id, &hook.secret_sealed).map_err(|e| anyhow::anyhow!("{e}"))?;
    String::from_utf8(plain).map_err(|_| anyhow::anyhow!("webhook secret is not UTF-8"))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookIn {
    /// Where alert events are POSTed.
    #[garde(length(min = 1, max = 2048))]
    pub url: String,
    /// Defaults to true.
    #[garde(skip)]
    pub enabled: Option<bool>,
    /// Issue a new signing secret (the old one stops working at once).
    #[garde(skip)]
    pub rotate_secret: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    pub grower_id: Uuid,
    pub url: String,
    pub enabled: bool,
    /// Shown only when the webhook is created or its secret rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn out(h: &webhook::Model, secret: Option<String>) -> WebhookOut {
    WebhookOut {
        grower_id: h.grower_id,
        url: h.url.clone(),
        enabled: h.enabled,
        secret,
        created_at: h.created_at,
        updated_at: h.updated_at,
    }
}

/// Sets the grower's alert webhook (owners and ADMIN). The signing secret is returned when the
/// webhook is created or `rotateSecret` is true, and never again.
#[utoipa::path(put, path = "/growers/{id}/alert-webhook", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = WebhookIn,
    responses((status = 200, body = WebhookOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn put_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<WebhookIn>>,
) -> Result<Json<WebhookOut>, AppError> {
    access::grower(&state.db, &user, id, Need::Manage).await?;
    let url = state.alerts.webhooks.check_url(input.url.trim()).map_err(|m| AppError::invalid_field("url", m))?;
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let existing = webhook::Entity::find_by_id(id).one(&txn).await?;
    let new_secret = (existing.is_none() || input.rotate_secret == Some(true))
        .then(|| format!("whsec_{}", crate::auth::secrets::random_token()));
    let sealed = match (&new_secret, &existing) {
        (Some(s), _) => state.auth.mfa.seal(id, s.as_bytes())?,
        (None, Some(h)) => h.secret_sealed.clone(),
        (None, None) => unreachable!("a new webhook always gets a secret"),
    };
    let row = webhook::Model {
        grower_id: id,
        url: url.to_string(),
        secret_sealed: sealed,
        enabled: input.enabled.unwrap_or(true),
        created_at: existing.as_ref().map_or(now, |h| h.created_at),
        updated_at: now,
    };
    webhook::Entity::insert(webhook::ActiveModel {
        grower_id: Set(row.grower_id),
        url: Set(row.url.clone()),
        secret_sealed: Set(row.secret_sealed.clone()),
        enabled: Set(row.enabled),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
    })
    .on_conflict(
        OnConflict::column(webhook::Column::GrowerId)
            .update_columns([
                webhook::Column::Url,
                webhook::Column::SecretSealed,
                webhook::Column::Enabled,
                webhook::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let details = serde_json::json!({"url": row.url, "enabled": row.enabled, "secretRotated": new_secret.is_some()});
    audit::record(
        &txn,
        Entry::new("alert_webhook.set").by(Some(user.user_id)).on("grower", id).details(details).client(&client),
    )
    .await?;
    txn.commit().await?;
    Ok(Json(out(&row, new_secret)))
}

/// The grower's alert webhook, without its secret (members and ADMIN).
#[utoipa::path(get, path = "/growers/{id}/alert-webhook", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = WebhookOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn get_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<WebhookOut>, AppError> {
    access::grower(&state.db, &user, id, Need::Read).await?;
    let h = webhook::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("this grower has no alert webhook".into()))?;
    Ok(Json(out(&h, None)))
}

/// Removes the grower's alert webhook (owners and ADMIN).
#[utoipa::path(delete, path = "/growers/{id}/alert-webhook", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn delete_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    access::grower(&state.db, &user, id, Need::Manage).await?;
    let txn = state.db.begin_write().await?;
    let gone = webhook::Entity::delete_by_id(id).exec(&txn).await?.rows_affected;
    if gone == 0 {
        return Err(AppError::NotFound("this grower has no alert webhook".into()));
    }
    audit::record(&txn, Entry::new("alert_webhook.delete").by(Some(user.user_id)).on("grower", id).client(&client))
        .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let strict = Sender::new(false).unwrap();
        assert!(strict.check_url("https://hooks.example.com/x").is_ok());
        for bad in [
            "ftp://x.example",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "https://user:pw@x.example/",
            "http://[::1]/",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        assert!(Sender::new(true).unwrap().check_url("http://127.0.0.1:8080/").is_ok());
    }
}
