//! Stock moves for orders: taken when one is placed, returned when it is cancelled or refunded.
//! Both go through products in product-id order, so concurrent orders and cancels lock rows in
//! one order and cannot deadlock.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, Query},
};

use crate::{
    ids::{OrderId, ProductId},
    shop::entity::{order_item, product},
};

/// Takes `quantity` of a product if it is there, returning its price and name; `None` when the
/// product is unknown, deleted, or short of stock. One statement
/// (`UPDATE … SET stock = stock - q WHERE id = ? AND stock >= q RETURNING price, name`): the row
/// lock and the re-checked `stock >= q` decide, so two orders can never both take the last unit.
pub(super) async fn take<C: ConnectionTrait>(
    txn: &C,
    product_id: ProductId,
    quantity: i32,
    now: DateTime<Utc>,
) -> Result<Option<(i64, String)>, DbErr> {
    let take = Query::update()
        .table(product::Entity)
        .value(product::Column::Stock, Expr::col(product::Column::Stock).sub(i64::from(quantity)))
        .value(product::Column::UpdatedAt, now)
        .and_where(product::Column::Id.eq(product_id))
        .and_where(product::Column::DeletedAt.is_null())
        .and_where(product::Column::Stock.gte(i64::from(quantity)))
        .returning(Query::returning().columns([product::Column::PriceMinor, product::Column::Name]))
        .to_owned();
    let row = txn.query_one(&take).await?;
    row.map(|r| Ok((r.try_get::<i64>("", "price_minor")?, r.try_get::<String>("", "name")?))).transpose()
}

/// Puts the items of an order back into stock.
pub async fn restock<C: ConnectionTrait>(txn: &C, order_id: OrderId) -> Result<(), DbErr> {
    let items = order_item::Entity::find()
        .filter(order_item::Column::OrderId.eq(order_id))
        .order_by_asc(order_item::Column::ProductId)
        .all(txn)
        .await?;
    let now = Utc::now();
    for item in items {
        product::Entity::update_many()
            .col_expr(product::Column::Stock, Expr::col(product::Column::Stock).add(i64::from(item.quantity)))
            .col_expr(product::Column::UpdatedAt, Expr::value(now))
            .filter(product::Column::Id.eq(item.product_id))
            .exec(txn)
            .await?;
    }
    Ok(())
}
