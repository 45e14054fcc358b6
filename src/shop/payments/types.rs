//! The wire types of the payment routes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PaymentStatus;
use crate::{
    money::Money,
    shop::entity::{payment, payment_transaction},
};

/// A payment as its owner sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOut {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub provider: String,
    /// For the client SDK (Stripe.js `confirmPayment`, or `sandbox-confirm`). Only its owner sees it.
    pub client_secret: Option<String>,
    pub status: PaymentStatus,
    pub amount: Money,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every step, oldest first (only on `GET /payments/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<TransactionOut>>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionOut {
    pub id: Uuid,
    pub transaction_type: String,
    pub amount: Money,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<payment_transaction::Model> for TransactionOut {
    fn from(t: payment_transaction::Model) -> Self {
        Self {
            id: t.id,
            transaction_type: t.transaction_type,
            amount: Money(t.amount_minor),
            status: t.status,
            metadata: t.metadata,
            created_at: t.created_at,
        }
    }
}

/// A payment without its steps; the client secret only in its owner's view.
pub fn payment_out(p: &payment::Model, owner_view: bool) -> PaymentOut {
    PaymentOut {
        payment_id: p.id,
        order_id: p.order_id,
        provider: p.provider.to_string(),
        client_secret: if owner_view { p.client_secret.clone() } else { None },
        status: p.status,
        amount: Money(p.amount_minor),
        currency: p.currency.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        transactions: None,
    }
}

#[derive(Debug, Deserialize, Serialize, garde::Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxConfirmIn {
    /// The payment's `clientSecret`.
    #[garde(length(min = 1, max = 512))]
    pub client_secret: String,
    /// What the simulated card does: `succeeded` (the default) or `failed`.
    #[garde(skip)]
    #[serde(default)]
    pub outcome: SandboxOutcome,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxOutcome {
    #[default]
    Succeeded,
    Failed,
}

/// The webhook's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAck {
    pub received: bool,
    /// `applied`, `duplicate` (this event id was applied before) or `ignored` (not an event
    /// we act on, or not one of our payments).
    pub outcome: String,
}
