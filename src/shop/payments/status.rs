//! A payment's status and its moves: each one conditional `UPDATE … WHERE status IN (allowed)`.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, DeriveActiveEnum, EntityTrait, EnumIter, QueryFilter,
    sea_query::{Expr, StringLen},
};
use serde::{Deserialize, Serialize};

use crate::{ids::PaymentId, shop::entity::payment};

// Stored in `payments.status` as its wire value; a CHECK keeps the column to these. (The doc
// comment below is the OpenAPI description.)
/// A payment's status (seed 004's `PaymentStatus`, plus `refunded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize, utoipa::ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "processing")]
    Processing,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    #[sea_orm(string_value = "refunded")]
    Refunded,
}

/// `payments.type`: what the row is. Only payments are stored (a refund is a step of its
/// payment, in `payment_transactions`); a CHECK keeps the column to this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PaymentKind {
    #[sea_orm(string_value = "payment")]
    Payment,
}

display_as_stored!(PaymentStatus, PaymentKind);

impl PaymentStatus {
    /// Still payable: the customer can (re)try with the same client secret.
    pub const OPEN: [PaymentStatus; 3] = [Self::Pending, Self::Processing, Self::Failed];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    /// The statuses a payment may move to `self` from.
    fn reachable_from(self) -> &'static [PaymentStatus] {
        match self {
            Self::Pending => &[],
            Self::Processing => &[Self::Pending, Self::Failed],
            // Also from `cancelled`: when the order was cancelled but the provider could not stop
            // the payment, the money did move; the payment says so and is flagged for refund.
            Self::Completed => &[Self::Pending, Self::Processing, Self::Failed, Self::Cancelled],
            Self::Failed => &[Self::Pending, Self::Processing],
            Self::Cancelled => &[Self::Pending, Self::Processing, Self::Failed],
            Self::Refunded => &[Self::Completed],
        }
    }
}

/// Moves a payment to `to` when it is in a status that allows it. Returns whether it moved.
pub(super) async fn transition<C: ConnectionTrait>(txn: &C, id: PaymentId, to: PaymentStatus) -> Result<bool, DbErr> {
    let res = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(to))
        .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::Status.is_in(to.reachable_from().iter().copied()))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
}
