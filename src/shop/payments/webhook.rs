//! Receiving a provider's webhook: only `stripe`, and only with `STRIPE_WEBHOOK_SECRET`. The
//! `Stripe-Signature` is checked over the raw body (see `stripe::verify_signature`), then the
//! event is applied once per event id.

use chrono::Utc;
use sea_orm::ActiveEnum;

use super::{Outcome, PaymentError, PaymentProvider, events::apply, stripe};
use crate::{metrics::WebhookLabels, state::AppState};

/// Verifies and applies one delivery to `/webhooks/payments/{provider}`. Every outcome, and
/// every refused signature, is counted.
pub async fn receive(
    state: &AppState,
    provider: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Outcome, PaymentError> {
    let count = |outcome: &'static str| {
        state.metrics.payment_webhooks.get_or_create(&WebhookLabels { provider: "stripe", outcome }).inc();
    };
    let named = PaymentProvider::try_from_value(&provider.to_string()).ok();
    let secret = match (named, &state.config.shop.stripe_webhook_secret) {
        (Some(PaymentProvider::Stripe), Some(secret)) => secret,
        _ => return Err(PaymentError::NoWebhooks),
    };
    let now = Utc::now().timestamp();
    if let Err(e) = stripe::verify_signature(secret.expose(), signature, body, now, state.config.shop.webhook_tolerance)
    {
        count("bad_signature");
        return Err(e.into());
    }
    let event = stripe::parse_event(body).map_err(PaymentError::BadEvent)?;
    let outcome = apply(state, PaymentProvider::Stripe, &event).await?;
    count(outcome.as_str());
    Ok(outcome)
}
