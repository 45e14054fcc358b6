//! Payments of an order being cancelled: cancelled with it in its transaction, then stopped at
//! the provider after the commit, so they can no longer be paid.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::json;

use super::{PaymentProvider, PaymentStatus, status, steps::note};
use crate::{ids::OrderId, shop::entity::payment, state::AppState};

/// A payment cancelled with its order, to stop at its provider after the commit.
#[derive(Debug)]
pub struct OpenPayment {
    provider: PaymentProvider,
    provider_ref: String,
}

/// Cancels the open payments of an order being cancelled, inside its transaction.
pub async fn cancel_open_payments<C: ConnectionTrait>(txn: &C, order_id: OrderId) -> Result<Vec<OpenPayment>, DbErr> {
    let open = payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::Status.is_in(PaymentStatus::OPEN))
        .all(txn)
        .await?;
    let mut cancelled = Vec::new();
    for p in open {
        if status::transition(txn, p.id.into(), PaymentStatus::Cancelled).await? {
            note(txn, p.id.into(), "cancel", p.amount_minor, "cancelled", json!({"reason": "order cancelled"})).await?;
            cancelled.push(OpenPayment { provider: p.provider, provider_ref: p.provider_ref });
        }
    }
    Ok(cancelled)
}

/// Best effort, after commit: cancels intents at the provider so they can no longer be paid.
/// A failure is logged; a payment that still succeeds is recorded as needing a refund.
pub async fn cancel_at_provider(state: &AppState, payments: Vec<OpenPayment>) {
    let provider = &state.shop.provider;
    for OpenPayment { provider: name, provider_ref } in payments {
        if name != provider.name() {
            continue;
        }
        if let Err(e) = provider.cancel(&provider_ref).await {
            tracing::warn!(error = %e, %provider_ref, "could not cancel the payment at the provider");
        }
    }
}
