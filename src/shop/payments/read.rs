//! Reading a payment with every step it went through: its customer, or ADMIN.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{PaymentError, PaymentOut, TransactionOut, payment_out};
use crate::{
    auth::{AuthUser, Permission},
    ids::PaymentId,
    shop::entity::{payment, payment_transaction},
};

/// Payment `id` for `me`, steps oldest first; the client secret only for its customer. Anyone
/// else gets [`PaymentError::NotFound`], as for a payment that does not exist.
pub async fn with_steps<C: ConnectionTrait>(db: &C, me: &AuthUser, id: PaymentId) -> Result<PaymentOut, PaymentError> {
    let p = match payment::Entity::find_by_id(id.0).one(db).await? {
        Some(p) if p.user_id == me.user_id || me.role.can(Permission::ManageAllOrders) => p,
        _ => return Err(PaymentError::NotFound),
    };
    let steps = payment_transaction::Entity::find()
        .filter(payment_transaction::Column::PaymentId.eq(id))
        .order_by_asc(payment_transaction::Column::CreatedAt)
        .order_by_asc(payment_transaction::Column::Id)
        .all(db)
        .await?;
    let mut out = payment_out(&p, p.user_id == me.user_id);
    out.transactions = Some(steps.into_iter().map(TransactionOut::from).collect());
    Ok(out)
}
