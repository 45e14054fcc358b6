//! Placing an order, in the caller's write transaction (the route runs it through
//! `idempotency::once`, which claims the key first and stores the response after):
//! 1. for each line, in product-id order, one conditional decrement takes the stock
//!    ([`super::stock`]; never read-then-write);
//! 2. the order and its items are inserted with the catalogue prices just returned; the total
//!    is computed here, never taken from the client.
//!
//! Any line short of stock or unknown fails the whole transaction: 409 (or 400), nothing changed.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{OrderChange, OrderError, OrderIn, OrderOut, OrderStatus, order_out, publish_change, stock};
use crate::{
    config::ShopConfig,
    db::WriteTxn,
    http::FieldError,
    ids::{ProductId, UserId},
    shop::entity::{order, order_item, product},
    state::AppState,
};

/// What an order asks for, checked: each product once, lines by product id (the order in which
/// they are taken), each with its index in the request for error details.
#[derive(Debug, Clone)]
pub struct Basket {
    lines: Vec<Line>,
    shipping_address: Option<Value>,
}

#[derive(Debug, Clone, Copy)]
struct Line {
    product_id: ProductId,
    quantity: i32,
    index: usize,
}

impl Basket {
    /// [`OrderError::RepeatedProducts`] naming every repeat of a product after its first line.
    pub fn new(input: &OrderIn) -> Result<Self, OrderError> {
        let mut lines: Vec<Line> = input
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| Line { product_id: item.product_id.into(), quantity: item.quantity, index })
            .collect();
        lines.sort_unstable_by_key(|l| (l.product_id, l.index));
        let repeated: Vec<FieldError> = lines
            .windows(2)
            .filter(|w| w[0].product_id == w[1].product_id)
            .map(|w| {
                FieldError::new(
                    format!("items[{}].productId", w[1].index),
                    "appears more than once; combine the quantities",
                )
            })
            .collect();
        if !repeated.is_empty() {
            return Err(OrderError::RepeatedProducts(repeated));
        }
        Ok(Self { lines, shipping_address: input.shipping_address.clone() })
    }
}

/// A placed order: the response body, and what to announce once it has committed.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Placed(pub OrderOut);

impl Placed {
    /// After the commit: counts the order, tells its owner, and drops cached stock.
    pub async fn after_commit(&self, state: &AppState) {
        state.metrics.orders_created.inc();
        publish_change(state, OrderChange::Created, &self.0);
        crate::shop::catalogue_changed(state).await;
    }
}

/// Places `basket` for `user` at today's catalogue prices, in `txn`.
pub async fn place(txn: &WriteTxn, shop: &ShopConfig, user: UserId, basket: &Basket) -> Result<Placed, OrderError> {
    let now = Utc::now();
    let order_id = Uuid::now_v7();
    let mut items = Vec::with_capacity(basket.lines.len());
    let mut short = Vec::new();
    let mut total: i64 = 0;
    for &line in &basket.lines {
        let Some((price, name)) = stock::take(txn, line.product_id, line.quantity, now).await? else {
            short.push(line);
            continue;
        };
        total = price
            .checked_mul(i64::from(line.quantity))
            .and_then(|sum| total.checked_add(sum))
            .filter(|t| *t <= i64::MAX / 2)
            .ok_or(OrderError::TotalTooLarge)?;
        items.push(order_item::Model {
            order_id,
            product_id: line.product_id.0,
            product_name: name,
            quantity: line.quantity,
            unit_price_minor: price,
        });
    }
    if !short.is_empty() {
        return Err(refusal(txn, &short).await?);
    }
    let o = order::Model {
        id: order_id,
        user_id: user.0,
        status: OrderStatus::Pending,
        total_minor: total,
        currency: shop.currency.clone(),
        shipping_address: basket.shipping_address.clone(),
        created_at: now,
        updated_at: now,
    };
    order::Entity::insert(o.clone().into_active_model()).exec_without_returning(txn).await?;
    order_item::Entity::insert_many(items.iter().cloned().map(IntoActiveModel::into_active_model))
        .exec_without_returning(txn)
        .await?;
    // Items by product id, as every later read of the order lists them.
    Ok(Placed(order_out(&o, &items)))
}

/// Why some lines could not be taken: unknown products are 400, short stock is 409, each line
/// named in the details. (Read after the failed decrements, inside the transaction that is about
/// to roll back; the numbers are what the shop had at that moment.)
async fn refusal<C: ConnectionTrait>(txn: &C, short: &[Line]) -> Result<OrderError, OrderError> {
    let stock: HashMap<ProductId, i64> = product::Entity::find()
        .filter(product::Column::Id.is_in(short.iter().map(|l| l.product_id)))
        .filter(product::Column::DeletedAt.is_null())
        .all(txn)
        .await?
        .into_iter()
        .map(|p| (p.id.into(), p.stock))
        .collect();
    let mut missing = Vec::new();
    let mut lacking = Vec::new();
    for line in short {
        let index = line.index;
        match stock.get(&line.product_id) {
            None => missing.push(FieldError::new(format!("items[{index}].productId"), "no such product")),
            Some(have) => lacking.push(FieldError::new(
                format!("items[{index}].quantity"),
                format!("only {have} in stock, {} requested", line.quantity),
            )),
        }
    }
    missing.sort_by(|a, b| a.field.cmp(&b.field));
    lacking.sort_by(|a, b| a.field.cmp(&b.field));
    Ok(if missing.is_empty() { OrderError::NotEnoughStock(lacking) } else { OrderError::UnknownProducts(missing) })
}
