//! The order status machine: `pending -> paid -> fulfilled`, `pending -> cancelled`,
//! `paid -> refunded`. Each move is one conditional `UPDATE … WHERE status IN (allowed)`, never
//! check-then-act.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DeriveActiveEnum, EntityTrait, EnumIter, Iterable, QueryFilter,
    sea_query::{Expr, StringLen},
};
use serde::{Deserialize, Serialize};

use super::OrderError;
use crate::{ids::OrderId, shop::entity::order};

// Stored in `orders.status` as its wire value; a CHECK keeps the column to these. (The doc
// comment below is the OpenAPI description.)
/// The order status machine: `pending -> paid -> fulfilled`, `pending -> cancelled`,
/// `paid -> refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize, utoipa::ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "paid")]
    Paid,
    #[sea_orm(string_value = "fulfilled")]
    Fulfilled,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    #[sea_orm(string_value = "refunded")]
    Refunded,
}

display_as_stored!(OrderStatus);

impl OrderStatus {
    /// Whether the machine allows `self -> to`.
    pub fn can_become(self, to: OrderStatus) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Paid)
                | (Self::Paid, Self::Fulfilled)
                | (Self::Pending, Self::Cancelled)
                | (Self::Paid, Self::Refunded)
        )
    }
}

/// Moves an order to `to` from wherever the machine allows, in one conditional statement.
/// [`OrderError::NotFound`] when the order does not exist, [`OrderError::CannotBecome`] naming
/// its status when the move is not allowed from where it is.
pub async fn transition<C: ConnectionTrait>(txn: &C, id: OrderId, to: OrderStatus) -> Result<order::Model, OrderError> {
    let from: Vec<OrderStatus> = OrderStatus::iter().filter(|s| s.can_become(to)).collect();
    let moved = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to))
        .col_expr(order::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(order::Column::Id.eq(id))
        .filter(order::Column::Status.is_in(from))
        .exec(txn)
        .await?;
    let o = order::Entity::find_by_id(id.0).one(txn).await?.ok_or(OrderError::NotFound)?;
    if moved.rows_affected != 1 {
        return Err(OrderError::CannotBecome { from: o.status, to });
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::OrderStatus::{self, *};

    #[test]
    fn the_status_machine_is_the_contracts() {
        let all: Vec<OrderStatus> = OrderStatus::iter().collect();
        assert_eq!(all, [Pending, Paid, Fulfilled, Cancelled, Refunded]);
        let allowed: Vec<_> =
            all.iter().flat_map(|a| all.iter().map(move |b| (*a, *b))).filter(|(a, b)| a.can_become(*b)).collect();
        assert_eq!(allowed, vec![(Pending, Paid), (Pending, Cancelled), (Paid, Fulfilled), (Paid, Refunded)]);
        for s in all {
            let wire = serde_json::to_value(s).unwrap();
            assert_eq!(wire, serde_json::json!(s.to_value()), "stored as sent");
            assert_eq!(s.to_string(), s.to_value());
        }
    }
}
