//! `payment_transactions`: every step a payment goes through (initiate, succeeded or failed,
//! cancel, refund, an amount mismatch, a payment for an order cancelled meanwhile), shown at
//! `GET /payments/{id}`.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use uuid::Uuid;

use crate::{ids::PaymentId, shop::entity::payment_transaction};

/// Notes one step of a payment: `kind` of step, its `status` and what else is worth keeping.
pub(super) async fn note<C: ConnectionTrait>(
    txn: &C,
    payment_id: PaymentId,
    kind: &str,
    amount_minor: i64,
    status: &str,
    metadata: serde_json::Value,
) -> Result<(), DbErr> {
    payment_transaction::Entity::insert(payment_transaction::ActiveModel {
        id: Set(Uuid::now_v7()),
        payment_id: Set(payment_id.0),
        transaction_type: Set(kind.into()),
        amount_minor: Set(amount_minor),
        status: Set(status.into()),
        metadata: Set(Some(metadata)),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}
