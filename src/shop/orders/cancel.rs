//! Cancelling a pending order (its owner, or ADMIN), in the caller's write transaction: the
//! order becomes `cancelled`, its stock comes back, and its open payments are cancelled with it.
//! A paid order is refunded instead (`payments::refund`).

use serde::Serialize;

use super::{
    OrderChange, OrderError, OrderOut, OrderStatus, full_order, publish_change, stock, transition, visible_order,
};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    db::WriteTxn,
    ids::OrderId,
    shop::payments::{self, OpenPayment},
    state::AppState,
};

/// A cancelled order: the response body, and its payments to stop at the provider once the
/// cancel has committed.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Cancelled {
    pub order: OrderOut,
    #[serde(skip)]
    open: Vec<OpenPayment>,
}

impl Cancelled {
    /// After the commit: tells the owner, drops cached stock, and cancels the payment intents at
    /// the provider (best effort).
    pub async fn after_commit(self, state: &AppState) {
        publish_change(state, OrderChange::Cancelled, &self.order);
        crate::shop::catalogue_changed(state).await;
        payments::cancel_at_provider(state, self.open).await;
    }
}

/// Cancels order `id` for `me`: [`OrderError::NotFound`] when `me` may not see it,
/// [`OrderError::CannotBecome`] once it is no longer pending.
pub async fn cancel(txn: &WriteTxn, me: &AuthUser, id: OrderId, client: &ClientMeta) -> Result<Cancelled, OrderError> {
    visible_order(txn, me, id).await?;
    let o = transition(txn, id, OrderStatus::Cancelled).await?;
    stock::restock(txn, id).await?;
    let open = payments::cancel_open_payments(txn, id).await?;
    audit::record(txn, Entry::new("order.cancelled").by(Some(me.user_id)).on("order", id).client(client)).await?;
    Ok(Cancelled { order: full_order(txn, &o).await?, open })
}
