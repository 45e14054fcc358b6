//! Stripe: a client of its REST API (PaymentIntents and Refunds, each call with an idempotency
//! key), the `Stripe-Signature` check, and the webhook events we act on.
//!
//! Signature scheme (Stripe's "verify manually" procedure): the header is
//! `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`. The signed payload is `"{t}.{raw body}"`,
//! HMAC-SHA256 with the endpoint secret. Any one `v1` may match (several appear while a secret
//! is being rolled); others schemes (`v0`) are ignored; each comparison is constant-time; and
//! `t` must be within the tolerance of our clock.

use std::time::Duration;

use serde_json::Value;

use super::{EventKind, Intent, PaymentStatus, ProviderError, ProviderEvent};
use crate::config::Secret;

/// Why a webhook's signature was refused. Each is a 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("Stripe-Signature has no timestamp or no v1 signature")]
    Malformed,
    #[error("Stripe-Signature timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 signature in Stripe-Signature matches the payload")]
    Mismatch,
}

/// Checks `header` against `body` and `secret`, with `now` in Unix seconds.
pub fn verify_signature(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    let expected = crate::util::timestamped_mac(secret, t, body);
    // Every candidate is compared in full and in constant time.
    let mut matched = false;
    for sig in signatures {
        if let Ok(bytes) = hex::decode(sig) {
            matched |= crate::util::constant_time_eq(&bytes, &expected);
        }
    }
    if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// Reads the events we act on from a verified webhook body; every other type is `Other`.
pub fn parse_event(body: &[u8]) -> Result<ProviderEvent, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not a Stripe event: {e}"))?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let id = text(&v["id"]).ok_or("event has no id")?;
    let event_type = text(&v["type"]).ok_or("event has no type")?;
    let object = &v["data"]["object"];
    let mut event = ProviderEvent {
        id,
        event_type: event_type.clone(),
        kind: EventKind::Other,
        provider_ref: text(&object["id"]).unwrap_or_default(),
        amount_minor: object["amount"].as_i64(),
        currency: text(&object["currency"]),
        detail: None,
    };
    match event_type.as_str() {
        "payment_intent.succeeded" => {
            event.kind = EventKind::Succeeded;
            event.amount_minor = object["amount_received"].as_i64().or(event.amount_minor);
        }
        "payment_intent.payment_failed" => {
            event.kind = EventKind::Failed;
            event.detail = text(&object["last_payment_error"]["message"]);
        }
        "payment_intent.processing" => event.kind = EventKind::Processing,
        "payment_intent.canceled" => {
            event.kind = EventKind::Canceled;
            event.detail = text(&object["cancellation_reason"]);
        }
        "charge.refunded" => {
            event.provider_ref = text(&object["payment_intent"]).unwrap_or_default();
            event.amount_minor = object["amount_refunded"].as_i64();
            event.kind = if object["refunded"].as_bool() == Some(true) {
                EventKind::Refunded
            } else {
                EventKind::PartiallyRefunded
            };
        }
        _ => {}
    }
    Ok(event)
}

/// A client of Stripe's REST API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Secret,
}

impl Client {
    pub fn new(base: &str, key: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("mash/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), key })
    }

    /// POSTs a form with an idempotency key. Network errors, 429 and 5xx are retried (twice,
    /// with backoff) under the same key, so Stripe performs the operation at most once.
    async fn post(&self, path: &str, form: &[(&str, String)], idempotency_key: &str) -> Result<Value, ProviderError> {
        let body =
            form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter().map(|(k, v)| (*k, v))).finish();
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .post(format!("{}{path}", self.base))
                .bearer_auth(self.key.expose())
                .header("Idempotency-Key", idempotency_key)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(res) => {
                    let status = res.status();
                    let value: Value = res.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        return Ok(value);
                    }
                    let message =
                        value["error"]["message"].as_str().unwrap_or("the payment provider refused the request");
                    if status.is_client_error() && status.as_u16() != 429 {
                        return Err(ProviderError::Rejected(message.to_string()));
                    }
                    format!("HTTP {status}: {message}")
                }
                Err(e) => e.to_string(),
            };
            if attempt >= 3 {
                return Err(ProviderError::Unavailable(retry));
            }
            tracing::warn!(path, attempt, error = %retry, "Stripe call failed; retrying with the same idempotency key");
            tokio::time::sleep(delay).await;
            delay *= 3;
            attempt += 1;
        }
    }

    pub async fn create_intent(
        &self,
        amount_minor: i64,
        currency: &str,
        metadata: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Intent, ProviderError> {
        let mut form = vec![
            ("amount", amount_minor.to_string()),
            ("currency", currency.to_ascii_lowercase()),
            ("automatic_payment_methods[enabled]", "true".to_string()),
        ];
        let keys: Vec<String> = metadata.iter().map(|(k, _)| format!("metadata[{k}]")).collect();
        for (key, (_, value)) in keys.iter().zip(metadata) {
            form.push((key.as_str(), value.clone()));
        }
        let v = self.post("/v1/payment_intents", &form, idempotency_key).await?;
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ProviderError::Unavailable(format!("Stripe's PaymentIntent response has no {name}")))
        };
        Ok(Intent {
            provider_ref: field("id")?,
            client_secret: field("client_secret")?,
            status: intent_status(v["status"].as_str().unwrap_or_default()),
        })
    }

    pub async fn refund(&self, provider_ref: &str, idempotency_key: &str) -> Result<String, ProviderError> {
        let v = self.post("/v1/refunds", &[("payment_intent", provider_ref.to_string())], idempotency_key).await?;
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    }

    pub async fn cancel(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        self.post(&format!("/v1/payment_intents/{provider_ref}/cancel"), &[], idempotency_key).await.map(|_| ())
    }
}

/// Our status for a PaymentIntent status.
fn intent_status(status: &str) -> PaymentStatus {
    match status {
        "processing" => PaymentStatus::Processing,
        "succeeded" => PaymentStatus::Completed,
        "canceled" => PaymentStatus::Cancelled,
        _ => PaymentStatus::Pending,
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    // A signature computed by Stripe's own documented procedure for this secret, time and body.
    fn sign(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures() {
        let (secret, t, body) = ("whsec_test", 1_700_000_000, r#"{"id":"evt_1"}"#);
        let good = sign(secret, t, body);
        let ok = |h: &str, now: i64| verify_signature(secret, Some(h), body.as_bytes(), now, Duration::from_secs(300));
        assert_eq!(ok(&format!("t={t},v1={good}"), t), Ok(()));
        // Any v1 may match; v0 and unknown parts are ignored.
        assert_eq!(ok(&format!("t={t},v1=deadbeef,v0=abc,v1={good}"), t + 299), Ok(()));
        assert_eq!(ok(&format!("t={t},v1={good}"), t + 301), Err(SignatureError::Stale));
        assert_eq!(ok(&format!("t={t},v1={good}"), t - 301), Err(SignatureError::Stale));
        assert_eq!(ok(&format!("t={t},v0={good}"), t), Err(SignatureError::Malformed));
        assert_eq!(ok(&format!("v1={good}"), t), Err(SignatureError::Malformed));
        assert_eq!(ok(&format!("t={},v1={good}", t + 1), t), Err(SignatureError::Mismatch));
        assert_eq!(ok(&format!("t={t},v1={}", sign("whsec_other", t, body)), t), Err(SignatureError::Mismatch));
        assert_eq!(
            verify_signature(secret, None, body.as_bytes(), t, Duration::from_secs(300)),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(
                secret,
                Some(&format!("t={t},v1={good}")),
                b"{\"id\":\"evt_2\"}",
                t,
                Duration::from_secs(300)
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn events() {
        let e = parse_event(br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":1990,"amount_received":1990,"currency":"usd"}}}"#).unwrap();
        assert_eq!((e.kind, e.provider_ref.as_str(), e.amount_minor), (EventKind::Succeeded, "pi_1", Some(1990)));
        let e = parse_event(br#"{"id":"evt_2","type":"charge.refunded","data":{"object":{"id":"ch_1","payment_intent":"pi_1","amount_refunded":1990,"refunded":true}}}"#).unwrap();
        assert_eq!((e.kind, e.provider_ref.as_str()), (EventKind::Refunded, "pi_1"));
        let e = parse_event(br#"{"id":"evt_3","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#).unwrap();
        assert_eq!(e.kind, EventKind::Other);
        assert!(parse_event(b"not json").is_err());
        assert!(parse_event(br#"{"type":"x"}"#).is_err());
    }
}
