//! Fulfilling a paid order (ADMIN): `paid -> fulfilled`, in its own transaction, then told to
//! the order's owner.

use super::{OrderChange, OrderError, OrderOut, OrderStatus, full_order, publish_change, transition};
use crate::{
    audit::{self, Entry},
    auth::ClientMeta,
    ids::{OrderId, UserId},
    state::AppState,
};

/// Marks order `id` fulfilled on behalf of `admin`; [`OrderError::CannotBecome`] unless it is
/// paid.
pub async fn fulfil(state: &AppState, admin: UserId, id: OrderId, client: &ClientMeta) -> Result<OrderOut, OrderError> {
    let txn = state.db.begin_write().await?;
    let o = transition(&txn, id, OrderStatus::Fulfilled).await?;
    audit::record(&txn, Entry::new("order.fulfilled").by(Some(admin.0)).on("order", id).client(client)).await?;
    let out = full_order(&txn, &o).await?;
    txn.commit().await?;
    publish_change(state, OrderChange::Fulfilled, &out);
    Ok(out)
}
