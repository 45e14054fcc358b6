//! Refunding an order's payment in full through its provider (ADMIN). The order becomes
//! `refunded` and its stock comes back; a *cancelled* order whose payment went through anyway
//! (flagged `needs_refund`) gets its money back and stays cancelled. Two steps, run by the route
//! through `idempotency::once_after`: [`Refund::prepare`] asks the provider (outside any
//! transaction), [`Refund::record`] applies the refund as a provider event in the route's
//! transaction.

use serde::Serialize;
use serde_json::json;

use super::{EventKind, Outcome, PaymentError, PaymentStatus, Provider, ProviderEvent, apply_in, events::announce};
use crate::{
    audit::{self, Entry},
    auth::ClientMeta,
    db::{Db, WriteTxn},
    ids::{OrderId, UserId},
    money::Money,
    shop::{
        entity::{order, payment},
        orders::{self, OrderError, OrderOut, OrderStatus},
    },
    state::AppState,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// A refund the provider has made, to record.
pub struct Refund {
    payment: payment::Model,
    event: ProviderEvent,
}

/// A refunded order: the response body, and the event to announce once it has committed.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Refunded {
    pub order: OrderOut,
    #[serde(skip)]
    event: ProviderEvent,
    #[serde(skip)]
    outcome: Outcome,
}

impl Refund {
    /// Finds the order's completed payment (the order must be paid, or cancelled with a payment
    /// that went through) and refunds it at the provider, which must be the one it was paid with.
    pub async fn prepare(db: &Db, provider: &Provider, order_id: OrderId) -> Result<Self, PaymentError> {
        let o = order::Entity::find_by_id(order_id.0).one(db).await?.ok_or(OrderError::NotFound)?;
        if !matches!(o.status, OrderStatus::Paid | OrderStatus::Cancelled) {
            return Err(PaymentError::NotRefundable(o.status));
        }
        let p = payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .filter(payment::Column::Status.eq(PaymentStatus::Completed))
            .one(db)
            .await?
            .ok_or(PaymentError::NothingToRefund(o.status))?;
        if p.provider != provider.name() {
            return Err(PaymentError::OtherProvider(p.provider));
        }
        let refund_ref = provider.refund(&p).await?;
        let event = ProviderEvent {
            id: format!("mash-refund-{}", p.id),
            event_type: "refund.created".into(),
            kind: EventKind::Refunded,
            provider_ref: p.provider_ref.clone(),
            amount_minor: Some(p.amount_minor),
            currency: Some(p.currency.clone()),
            detail: Some(refund_ref),
        };
        Ok(Self { payment: p, event })
    }

    /// Applies the refund in `txn` (once per refund: its event id is the payment's), on behalf of
    /// `admin`, and returns the order as it now is.
    pub async fn record(self, txn: &WriteTxn, admin: UserId, client: &ClientMeta) -> Result<Refunded, PaymentError> {
        let Self { payment: p, event } = self;
        let outcome = apply_in(txn, p.provider, &event).await?;
        let details = json!({"paymentId": p.id, "amount": Money(p.amount_minor), "outcome": outcome.as_str()});
        let entry = Entry::new("order.refunded").by(Some(admin.0)).on("order", p.order_id).details(details);
        audit::record(txn, entry.client(client)).await?;
        let o =
            order::Entity::find_by_id(p.order_id).one(txn).await?.ok_or(PaymentError::Vanished("order vanished"))?;
        Ok(Refunded { order: orders::full_order(txn, &o).await?, event, outcome })
    }
}

impl Refunded {
    /// After the commit: tells the owner (when this request applied the refund) and drops cached
    /// stock.
    pub async fn after_commit(self, state: &AppState) {
        if self.outcome == Outcome::Applied {
            announce(state, state.shop.provider.name(), &self.event).await;
        }
        crate::shop::catalogue_changed(state).await;
    }
}
