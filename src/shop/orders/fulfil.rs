//! Fulfilling a paid order (ADMIN): `paid -> fulfilled`, in its own transaction.

use super::{OrderError, OrderOut, OrderStatus, full_order, transition};
use crate::{
    audit::{self, Entry},
    auth::ClientMeta,
    db::Db,
    ids::{OrderId, UserId},
};

/// Marks order `id` fulfilled on behalf of `admin`; [`OrderError::CannotBecome`] unless it is
/// paid. The caller announces the change after this returns (it has committed).
pub async fn fulfil(db: &Db, admin: UserId, id: OrderId, client: &ClientMeta) -> Result<OrderOut, OrderError> {
    let txn = db.begin_write().await?;
    let o = transition(&txn, id, OrderStatus::Fulfilled).await?;
    audit::record(&txn, Entry::new("order.fulfilled").by(Some(admin.0)).on("order", id).client(client)).await?;
    let out = full_order(&txn, &o).await?;
    txn.commit().await?;
    Ok(out)
}
