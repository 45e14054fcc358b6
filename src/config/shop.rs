//! The shop: currency, catalogue cache, idempotency, and the payment provider.

use std::time::Duration;

use super::env::{ConfigError, Env, Secret, bad, http_url};

/// Which payment provider creates payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentProviderKind {
    /// Fully local: payments are confirmed with `POST /payments/{id}/sandbox-confirm`.
    Sandbox,
    /// Stripe PaymentIntents, confirmed by Stripe's signed webhooks.
    Stripe,
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

impl ShopConfig {
    pub(super) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let currency = env.get("SHOP_CURRENCY").unwrap_or("USD").to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad("SHOP_CURRENCY", format!("expected a 3-letter ISO 4217 code, got {currency:?}")));
        }
        let payment_provider = match env.get("PAYMENT_PROVIDER").map(str::to_ascii_lowercase).as_deref() {
            None | Some("sandbox") => PaymentProviderKind::Sandbox,
            Some("stripe") => PaymentProviderKind::Stripe,
            Some(other) => return Err(bad("PAYMENT_PROVIDER", format!("expected sandbox or stripe, got {other:?}"))),
        };
        let stripe_secret_key = env.opt_secret("STRIPE_SECRET_KEY");
        if payment_provider == PaymentProviderKind::Stripe && stripe_secret_key.is_none() {
            return Err(bad("STRIPE_SECRET_KEY", "required when PAYMENT_PROVIDER=stripe"));
        }
        let stripe_api_base =
            http_url("STRIPE_API_BASE", env.get("STRIPE_API_BASE").unwrap_or("https://api.stripe.com"))?;
        let cache_capacity: u64 = env.parse("CATALOGUE_CACHE_ENTRIES", 10_000, "a number of entries")?;
        Ok(Self {
            currency,
            cache_ttl: env.seconds("CATALOGUE_CACHE_TTL_SECS", 60)?,
            cache_capacity,
            idempotency_ttl: env.seconds("IDEMPOTENCY_TTL_SECS", 86_400)?,
            payment_provider,
            stripe_secret_key,
            stripe_webhook_secret: env.opt_secret("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base,
            webhook_tolerance: env.seconds("WEBHOOK_TOLERANCE_SECS", 300)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentProviderKind;
    use crate::config::tests::cfg;

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
}
