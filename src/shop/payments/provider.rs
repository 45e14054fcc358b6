//! The payment provider behind the shop: `sandbox` (the default, fully local) or `stripe`
//! (PaymentIntents). Every call carries a provider idempotency key derived from what it acts on,
//! so a retry, or two requests racing, reach the provider as one operation.

use rand::RngCore;
use sea_orm::{DeriveActiveEnum, EnumIter, sea_query::StringLen};

use super::{PaymentStatus, stripe};
use crate::{
    config::{PaymentProviderKind, ShopConfig},
    shop::entity::{order, payment},
};

/// Who moves the money: `payments.provider` and `webhook_events.provider` (a CHECK keeps both
/// columns to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PaymentProvider {
    #[sea_orm(string_value = "sandbox")]
    Sandbox,
    #[sea_orm(string_value = "stripe")]
    Stripe,
}

display_as_stored!(PaymentProvider);

/// What a provider returns for a new payment.
#[derive(Debug, Clone)]
pub struct Intent {
    pub provider_ref: String,
    pub client_secret: String,
    pub status: PaymentStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the request (4xx): shown to the client as 422.
    #[error("{0}")]
    Rejected(String),
    /// The provider could not be reached or failed (after retries): 503.
    #[error("{0}")]
    Unavailable(String),
}

/// A provider event, whatever its source (a webhook, a sandbox confirmation, a refund we start).
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub id: String,
    pub event_type: String,
    pub kind: EventKind,
    pub provider_ref: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Succeeded,
    Failed,
    Processing,
    Canceled,
    Refunded,
    PartiallyRefunded,
    Other,
}

/// The configured provider.
pub enum Provider {
    Sandbox,
    Stripe(stripe::Client),
}

impl Provider {
    pub fn from_config(cfg: &ShopConfig) -> anyhow::Result<Self> {
        Ok(match cfg.payment_provider {
            PaymentProviderKind::Sandbox => Self::Sandbox,
            PaymentProviderKind::Stripe => {
                let key =
                    cfg.stripe_secret_key.clone().ok_or_else(|| anyhow::anyhow!("STRIPE_SECRET_KEY is not set"))?;
                Self::Stripe(stripe::Client::new(&cfg.stripe_api_base, key)?)
            }
        })
    }

    pub fn name(&self) -> PaymentProvider {
        match self {
            Self::Sandbox => PaymentProvider::Sandbox,
            Self::Stripe(_) => PaymentProvider::Stripe,
        }
    }

    /// `key` is the provider's idempotency key; every parameter sent with it is derived from the
    /// order alone, so a retry or a concurrent request with the same key is the same request.
    pub(super) async fn create_intent(&self, o: &order::Model, key: &str) -> Result<Intent, ProviderError> {
        match self {
            Self::Sandbox => {
                let mut secret = [0u8; 24];
                rand::rng().fill_bytes(&mut secret);
                let provider_ref = format!("sb_{}", key.trim_start_matches("mash-"));
                Ok(Intent {
                    client_secret: format!("{provider_ref}_secret_{}", hex::encode(secret)),
                    provider_ref,
                    status: PaymentStatus::Pending,
                })
            }
            Self::Stripe(client) => {
                let metadata = [("order_id", o.id.to_string()), ("user_id", o.user_id.to_string())];
                client.create_intent(o.total_minor, &o.currency, &metadata, key).await
            }
        }
    }

    /// Refunds a payment in full; returns the provider's reference of the refund.
    pub(super) async fn refund(&self, p: &payment::Model) -> Result<String, ProviderError> {
        match self {
            Self::Sandbox => Ok(format!("sb_re_{}", p.id.simple())),
            Self::Stripe(client) => client.refund(&p.provider_ref, &format!("mash-refund-{}", p.id)).await,
        }
    }

    pub(super) async fn cancel(&self, provider_ref: &str) -> Result<(), ProviderError> {
        match self {
            Self::Sandbox => Ok(()),
            Self::Stripe(client) => client.cancel(provider_ref, &format!("mash-cancel-{provider_ref}")).await,
        }
    }
}
