//! Provider events (Stripe webhooks, sandbox confirmations, refunds we start) all go through
//! [`apply_in`]: one transaction records the event id (each is applied once), moves the payment
//! and its order together, and notes the step in `payment_transactions`.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::OnConflict};
use serde_json::{Value, json};

use super::{EventKind, PaymentError, PaymentProvider, PaymentStatus, ProviderEvent, status, steps::note};
use crate::{
    ids::PaymentId,
    money::Money,
    shop::{
        entity::{order, payment, webhook_event},
        orders::{self, OrderChange, OrderError, OrderStatus},
    },
    state::AppState,
};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Ignored,
}

impl Outcome {
    /// As the webhook answers it and the metrics count it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// Applies one provider event in its own transaction (see [`apply_in`]), then announces it.
pub async fn apply(
    state: &AppState,
    provider: PaymentProvider,
    event: &ProviderEvent,
) -> Result<Outcome, PaymentError> {
    let txn = state.db.begin_write().await?;
    let outcome = apply_in(&txn, provider, event).await?;
    txn.commit().await?;
    if outcome == Outcome::Applied {
        announce(state, provider, event).await;
        if matches!(event.kind, EventKind::Refunded) {
            // Stock came back.
            crate::shop::catalogue_changed(state).await;
        }
    }
    Ok(outcome)
}

/// Applies one provider event inside `txn`: records its id (a second delivery is `Duplicate`
/// and changes nothing), moves the payment and its order together, and notes the step.
pub async fn apply_in<C: ConnectionTrait>(
    txn: &C,
    provider: PaymentProvider,
    event: &ProviderEvent,
) -> Result<Outcome, PaymentError> {
    let first = webhook_event::Entity::insert(webhook_event::ActiveModel {
        provider: Set(provider),
        event_id: Set(event.id.chars().take(255).collect()),
        event_type: Set(event.event_type.chars().take(128).collect()),
        received_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([webhook_event::Column::Provider, webhook_event::Column::EventId]).do_nothing().to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    if first == 0 {
        return Ok(Outcome::Duplicate);
    }
    if event.kind == EventKind::Other || event.provider_ref.is_empty() {
        return Ok(Outcome::Ignored);
    }
    let Some(p) = find(txn, provider, event).await? else {
        tracing::info!(event_id = %event.id, provider_ref = %event.provider_ref, "event for a payment we do not know; ignored");
        return Ok(Outcome::Ignored);
    };
    let step = Step { txn, p: &p, event };
    match event.kind {
        EventKind::Succeeded => step.succeeded().await?,
        EventKind::Failed => step.moved(PaymentStatus::Failed, "payment", "failed").await?,
        EventKind::Processing => step.moved(PaymentStatus::Processing, "payment", "processing").await?,
        EventKind::Canceled => step.moved(PaymentStatus::Cancelled, "cancel", "cancelled").await?,
        EventKind::PartiallyRefunded => {
            step.note("refund", event.amount_minor.unwrap_or(0), "partial", json!({})).await?
        }
        EventKind::Refunded => step.refunded().await?,
        EventKind::Other => unreachable!("handled above"),
    }
    Ok(Outcome::Applied)
}

/// The payment an event is about.
async fn find<C: ConnectionTrait>(
    db: &C,
    provider: PaymentProvider,
    event: &ProviderEvent,
) -> Result<Option<payment::Model>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Provider.eq(provider))
        .filter(payment::Column::ProviderRef.eq(event.provider_ref.as_str()))
        .one(db)
        .await
}

/// One event being applied to its payment.
struct Step<'a, C> {
    txn: &'a C,
    p: &'a payment::Model,
    event: &'a ProviderEvent,
}

impl<C: ConnectionTrait> Step<'_, C> {
    fn id(&self) -> PaymentId {
        self.p.id.into()
    }

    /// Notes the step, with the event's id, type and detail beside `extra`.
    async fn note(&self, kind: &str, amount_minor: i64, status: &str, extra: Value) -> Result<(), DbErr> {
        let mut meta = json!({"eventId": self.event.id, "eventType": self.event.event_type});
        if let (Some(obj), Some(more)) = (meta.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        if let Some(detail) = &self.event.detail {
            meta["detail"] = json!(detail);
        }
        note(self.txn, self.id(), kind, amount_minor, status, meta).await
    }

    /// Moves the payment alone (no order change), noting `word`, or `ignored` when its status
    /// does not allow the move.
    async fn moved(&self, to: PaymentStatus, kind: &str, word: &str) -> Result<(), DbErr> {
        let moved = status::transition(self.txn, self.id(), to).await?;
        self.note(kind, self.p.amount_minor, if moved { word } else { "ignored" }, json!({})).await
    }

    /// The payment completed: it and its order are paid, when the amount and currency are the
    /// payment's. A payment for an order that was cancelled meanwhile is flagged for refund.
    async fn succeeded(&self) -> Result<(), PaymentError> {
        let (p, event) = (self.p, self.event);
        let amount = event.amount_minor.unwrap_or(-1);
        let currency_ok = event.currency.as_deref().is_none_or(|c| c.eq_ignore_ascii_case(&p.currency));
        if amount != p.amount_minor || !currency_ok {
            tracing::error!(payment_id = %p.id, received = amount, expected = p.amount_minor, "payment amount does not match the order");
            let expected = json!({"expected": Money(p.amount_minor)});
            return Ok(self.note("amount_mismatch", amount.max(0), "rejected", expected).await?);
        }
        if !status::transition(self.txn, self.id(), PaymentStatus::Completed).await? {
            return Ok(self.note("payment", amount, "ignored", json!({"paymentStatus": p.status})).await?);
        }
        self.note("payment", amount, "succeeded", json!({})).await?;
        match orders::transition(self.txn, p.order_id.into(), OrderStatus::Paid).await {
            Ok(_) => Ok(()),
            Err(e @ OrderError::CannotBecome { .. }) => {
                // Paid after the order was cancelled: the money must go back.
                let why = e.to_string();
                tracing::warn!(payment_id = %p.id, order_id = %p.order_id, %why, "payment succeeded for an order that is not pending; it needs a refund");
                Ok(self.note("order_not_payable", amount, "needs_refund", json!({"reason": why})).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The payment was refunded in full: it and its order are refunded, and the stock returns
    /// (unless the order was fulfilled: the goods are gone, the stock stays as it is).
    async fn refunded(&self) -> Result<(), PaymentError> {
        let p = self.p;
        if !status::transition(self.txn, self.id(), PaymentStatus::Refunded).await? {
            return Ok(self.note("refund", p.amount_minor, "ignored", json!({"paymentStatus": p.status})).await?);
        }
        let amount = self.event.amount_minor.unwrap_or(p.amount_minor);
        self.note("refund", amount, "succeeded", json!({})).await?;
        match orders::transition(self.txn, p.order_id.into(), OrderStatus::Refunded).await {
            Ok(_) => Ok(orders::restock(self.txn, p.order_id.into()).await?),
            Err(e @ OrderError::CannotBecome { .. }) => {
                let why = e.to_string();
                Ok(self.note("order_not_refundable", p.amount_minor, "noted", json!({"reason": why})).await?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// After an applied event has committed: tells the order's owner (`/orders/{userId}`) that the
/// order was paid, its payment failed, or it was refunded, when the order shows it (a payment
/// that arrives after a cancellation does not make the order paid).
pub(super) async fn announce(state: &AppState, provider: PaymentProvider, event: &ProviderEvent) {
    let (change, shows) = match event.kind {
        EventKind::Succeeded => (OrderChange::Paid, Some(OrderStatus::Paid)),
        EventKind::Failed => (OrderChange::PaymentFailed, None),
        EventKind::Refunded => (OrderChange::Refunded, Some(OrderStatus::Refunded)),
        _ => return,
    };
    let found = async {
        let Some(p) = find(&state.db, provider, event).await? else { return Ok(None) };
        let Some(o) = order::Entity::find_by_id(p.order_id).one(&state.db).await? else { return Ok(None) };
        if shows.is_some_and(|status| o.status != status) {
            return Ok(None);
        }
        orders::full_order(&state.db, &o).await.map(Some)
    };
    match found.await {
        Ok(Some(out)) => orders::publish_change(state, change, &out),
        Ok(None) => {}
        Err::<_, DbErr>(e) => tracing::warn!(error = %e, "could not announce an order change"),
    }
}
