//! `/orders`: creation that never oversells, the status machine, cancel with restock.
//!
//! Creation is one write transaction:
//! 1. the `Idempotency-Key` is claimed (see `crate::idempotency`);
//! 2. for each item, in product-id order (so concurrent orders lock rows in one order and
//!    cannot deadlock), one conditional decrement
//!    `UPDATE products SET stock = stock - q WHERE id = ? AND stock >= q RETURNING price, name`
//!    (never read-then-write: the row lock and the re-checked condition decide);
//! 3. the order and its items are inserted with the catalogue prices just returned; the total
//!    is computed here, never taken from the client;
//! 4. the response is stored for replays, and everything commits together.
//!
//! Any item short of stock or unknown rolls the whole transaction back: 409 (or 400) and
//! nothing changed.

use std::collections::HashMap;

use axum::{extract::State, http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use garde::Validate;
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DeriveActiveEnum, EntityTrait, EnumIter, Iterable, QueryFilter,
    QueryOrder,
    sea_query::{Expr, ExprTrait, StringLen},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::entity::{order, order_item, product};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, Authorized, ClientMeta, perm},
    http::{AppError, FieldError, Json, ListParams, Page, Path, Query, Valid},
    idempotency::{self, IdempotencyKey},
    money::Money,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(fulfill_order))
}

/// The order status machine: `pending -> paid -> fulfilled`, `pending -> cancelled`,
/// `paid -> refunded`. Stored in `orders.status` as its wire value (a CHECK keeps it to these).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize, utoipa::ToSchema,
)]
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

#[derive(Debug, Clone, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemIn {
    #[garde(skip)]
    pub product_id: Uuid,
    #[garde(range(min = 1, max = 10_000))]
    pub quantity: i32,
}

/// A new order. Prices are never read from the request: fields such as `unitPrice` or `total`
/// are ignored, and the catalogue price at the time of the order is used.
#[derive(Debug, Clone, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderIn {
    /// 1 to 100 items, each product at most once.
    #[garde(length(min = 1, max = 100), dive)]
    pub items: Vec<OrderItemIn>,
    /// Free-form address object (at most 4 KiB of JSON).
    #[garde(inner(custom(valid_address)))]
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<Value>,
}

fn valid_address(value: &Value, _: &()) -> garde::Result {
    if !value.is_object() {
        return Err(garde::Error::new("must be an object"));
    }
    if serde_json::to_vec(value).map_or(usize::MAX, |b| b.len()) > 4096 {
        return Err(garde::Error::new("must be at most 4 KiB of JSON"));
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemOut {
    pub product_id: Uuid,
    /// The product's name when the order was placed.
    pub product_name: String,
    pub quantity: i32,
    /// The catalogue price when the order was placed.
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderOut {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    /// By product id.
    pub items: Vec<OrderItemOut>,
    pub total: Money,
    pub currency: String,
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn order_out(o: &order::Model, items: &[order_item::Model]) -> OrderOut {
    OrderOut {
        id: o.id,
        user_id: o.user_id,
        status: o.status,
        items: items
            .iter()
            .map(|i| OrderItemOut {
                product_id: i.product_id,
                product_name: i.product_name.clone(),
                quantity: i.quantity,
                unit_price: Money(i.unit_price_minor),
                line_total: Money(i.unit_price_minor * i64::from(i.quantity)),
            })
            .collect(),
        total: Money(o.total_minor),
        currency: o.currency.clone(),
        shipping_address: o.shipping_address.clone(),
        created_at: o.created_at,
        updated_at: o.updated_at,
    }
}

/// Takes `quantity` of a product if it is there, returning its price and name; `None` when the
/// product is unknown, deleted, or short of stock. One statement: the row lock and the re-checked
/// `stock >= q` decide, so two orders can never both take the last unit.
async fn take_stock<C: ConnectionTrait>(
    txn: &C,
    product_id: Uuid,
    quantity: i32,
    now: DateTime<Utc>,
) -> Result<Option<(i64, String)>, sea_orm::DbErr> {
    use sea_orm::sea_query::Query;
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

/// Puts the items of an order back into stock, in product-id order (the same order in which
/// orders take stock, so cancels and orders cannot deadlock).
pub async fn restock<C: ConnectionTrait>(txn: &C, order_id: Uuid) -> Result<(), sea_orm::DbErr> {
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

/// Moves an order `from` one of the given statuses `to` another, in one conditional statement
/// (no check-then-act). 404 when the order does not exist, 409 naming its status when the move
/// is not allowed from where it is.
pub async fn transition<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    to: OrderStatus,
) -> Result<order::Model, AppError> {
    let from: Vec<OrderStatus> = OrderStatus::iter().filter(|s| s.can_become(to)).collect();
    let moved = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to))
        .col_expr(order::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::Status.is_in(from))
        .exec(txn)
        .await?;
    let o = order::Entity::find_by_id(order_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::NotFound("order not found".into()))?;
    if moved.rows_affected != 1 {
        return Err(AppError::Conflict(format!("order is {}; it cannot become {to}", o.status)));
    }
    Ok(o)
}

async fn items_of<C: ConnectionTrait>(
    db: &C,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<order_item::Model>>, sea_orm::DbErr> {
    let mut by_order: HashMap<Uuid, Vec<order_item::Model>> = HashMap::new();
    let items = order_item::Entity::find()
        .filter(order_item::Column::OrderId.is_in(order_ids.iter().copied()))
        .order_by_asc(order_item::Column::OrderId)
        .order_by_asc(order_item::Column::ProductId)
        .all(db)
        .await?;
    for item in items {
        by_order.entry(item.order_id).or_default().push(item);
    }
    Ok(by_order)
}

/// Tells the order's owner about a change on `/orders/{userId}` (call after commit).
pub fn publish_change(state: &AppState, change: &str, user_id: Uuid, order: &OrderOut) {
    state.realtime.publish(
        &format!("/orders/{user_id}"),
        None,
        &serde_json::json!({ "change": change, "order": order }),
    );
}

/// Orders as clients see them, items included, in the order given.
pub async fn orders_out<C: ConnectionTrait>(db: &C, rows: &[order::Model]) -> Result<Vec<OrderOut>, sea_orm::DbErr> {
    let ids: Vec<Uuid> = rows.iter().map(|o| o.id).collect();
    let mut items = items_of(db, &ids).await?;
    Ok(rows.iter().map(|o| order_out(o, &items.remove(&o.id).unwrap_or_default())).collect())
}

/// Loads one order for `me`: its owner or an ADMIN. Anyone else gets 404, exactly like an
/// order that does not exist.
pub async fn visible_order<C: ConnectionTrait>(db: &C, me: &AuthUser, id: Uuid) -> Result<order::Model, AppError> {
    let o = order::Entity::find_by_id(id).one(db).await?;
    match o {
        Some(o) if o.user_id == me.user_id || me.require(crate::auth::Permission::ManageAllOrders).is_ok() => Ok(o),
        _ => Err(AppError::NotFound("order not found".into())),
    }
}

pub async fn full_order<C: ConnectionTrait>(db: &C, o: &order::Model) -> Result<OrderOut, AppError> {
    let items = items_of(db, &[o.id]).await?.remove(&o.id).unwrap_or_default();
    Ok(order_out(o, &items))
}

/// Places an order. Prices come from the catalogue; stock is taken in the same transaction;
/// not enough stock is 409 and nothing changes. Send `Idempotency-Key` to retry safely.
#[utoipa::path(post, path = "/orders", tag = "orders", security(("bearer" = [])), request_body = OrderIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body; 422 for the same key with another body")),
    responses((status = 201, body = OrderOut), (status = 400), (status = 401), (status = 403), (status = 409, description = "not enough stock"), (status = 422)))]
#[tracing::instrument(skip_all)]
async fn create_order(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    key: IdempotencyKey,
    Valid(Json(input)): Valid<Json<OrderIn>>,
) -> Result<Response, AppError> {
    let mut wanted: Vec<(Uuid, i32, usize)> =
        input.items.iter().enumerate().map(|(i, item)| (item.product_id, item.quantity, i)).collect();
    wanted.sort_unstable_by_key(|w| (w.0, w.2));
    let repeated: Vec<FieldError> = wanted
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| {
            FieldError::new(format!("items[{}].productId", w[1].2), "appears more than once; combine the quantities")
        })
        .collect();
    if !repeated.is_empty() {
        return Err(AppError::BadRequest { message: "an order lists each product once".into(), details: repeated });
    }
    let idem = key.bind(me.user_id, "POST /orders", &input);
    let ttl = state.config.shop.idempotency_ttl;
    let now = Utc::now();
    let placed = idempotency::once(&state.db, idem.as_ref(), ttl, StatusCode::CREATED, async |txn| {
        let order_id = Uuid::now_v7();
        let mut items = Vec::with_capacity(wanted.len());
        let mut short = Vec::new();
        let mut total: i64 = 0;
        for &(product_id, quantity, index) in &wanted {
            match take_stock(txn, product_id, quantity, now).await? {
                Some((price, name)) => {
                    total = price
                        .checked_mul(i64::from(quantity))
                        .and_then(|line| total.checked_add(line))
                        .filter(|t| *t <= i64::MAX / 2)
                        .ok_or_else(|| AppError::Unprocessable("order total is too large".into()))?;
                    items.push(order_item::Model {
                        order_id,
                        product_id,
                        product_name: name,
                        quantity,
                        unit_price_minor: price,
                    });
                }
                None => short.push((product_id, quantity, index)),
            }
        }
        if !short.is_empty() {
            return Err(refusal(txn, &short).await?);
        }
        let o = order::Model {
            id: order_id,
            user_id: me.user_id,
            status: OrderStatus::Pending,
            total_minor: total,
            currency: state.config.shop.currency.clone(),
            shipping_address: input.shipping_address.clone(),
            created_at: now,
            updated_at: now,
        };
        order::Entity::insert(sea_orm::IntoActiveModel::into_active_model(o.clone()))
            .exec_without_returning(txn)
            .await?;
        order_item::Entity::insert_many(items.iter().cloned().map(sea_orm::IntoActiveModel::into_active_model))
            .exec_without_returning(txn)
            .await?;
        // Items by product id, as every later read of the order lists them.
        Ok::<_, AppError>(order_out(&o, &items))
    })
    .await?;
    Ok(placed
        .then(async |out| {
            state.metrics.orders_created.inc();
            publish_change(&state, "created", me.user_id, &out);
            state.shop.cache.invalidate(state.redis.as_ref()).await;
        })
        .await)
}

/// Why some items could not be taken: unknown products are 400, short stock is 409, each item
/// named in `details`. (Read after the failed decrements, inside the transaction that is about
/// to roll back; the numbers are what the shop had at that moment.)
async fn refusal<C: ConnectionTrait>(txn: &C, short: &[(Uuid, i32, usize)]) -> Result<AppError, AppError> {
    let stock: HashMap<Uuid, i64> = product::Entity::find()
        .filter(product::Column::Id.is_in(short.iter().map(|s| s.0)))
        .filter(product::Column::DeletedAt.is_null())
        .all(txn)
        .await?
        .into_iter()
        .map(|p| (p.id, p.stock))
        .collect();
    let mut missing = Vec::new();
    let mut lacking = Vec::new();
    for &(product_id, quantity, index) in short {
        match stock.get(&product_id) {
            None => missing.push(FieldError::new(format!("items[{index}].productId"), "no such product")),
            Some(have) => lacking.push(FieldError::new(
                format!("items[{index}].quantity"),
                format!("only {have} in stock, {quantity} requested"),
            )),
        }
    }
    missing.sort_by(|a, b| a.field.cmp(&b.field));
    lacking.sort_by(|a, b| a.field.cmp(&b.field));
    Ok(if !missing.is_empty() {
        AppError::BadRequest { message: "the order names products that do not exist".into(), details: missing }
    } else {
        AppError::ConflictWith { message: "not enough stock".into(), details: lacking }
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this status.
    pub status: Option<String>,
    /// ADMIN only: only this user's orders.
    pub user_id: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

/// The caller's orders, newest first; ADMIN sees everyone's (`?userId=` narrows).
#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])), params(OrderQuery),
    responses((status = 200, body = Page<OrderOut>), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn list_orders(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    Query(q): Query<OrderQuery>,
) -> Result<Json<Page<OrderOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let all = me.role.can(crate::auth::Permission::ManageAllOrders);
    let mut query = order::Entity::find();
    if !all {
        query = query.filter(order::Column::UserId.eq(me.user_id));
    }
    if let Some(user_id) = crate::http::uuid_param("userId", q.user_id.as_deref())? {
        if !all {
            return Err(AppError::Forbidden("only admins can list other users' orders".into()));
        }
        query = query.filter(order::Column::UserId.eq(user_id));
    }
    if let Some(raw) = q.status.as_deref().filter(|s| !s.is_empty()) {
        let status = OrderStatus::try_from_value(&raw.to_string()).map_err(|_| {
            AppError::invalid_field("status", "must be one of pending, paid, fulfilled, cancelled, refunded")
        })?;
        query = query.filter(order::Column::Status.eq(status));
    }
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_desc(order::Column::CreatedAt).order_by_desc(order::Column::Id))
        .await?;
    let data = orders_out(&state.db, &rows).await?;
    Ok(Json(Page::new(data, &page, total)))
}

/// One order: its owner's or, for ADMIN, anyone's.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn get_order(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderOut>, AppError> {
    let o = visible_order(&state.db, &me, id).await?;
    Ok(Json(full_order(&state.db, &o).await?))
}

/// Cancels a pending order and returns its stock (its owner, or ADMIN). 409 once it is paid:
/// a paid order is refunded instead. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), params(("id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 200, body = OrderOut), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn cancel_order(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    client: ClientMeta,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
) -> Result<Response, AppError> {
    let idem = key.bind(me.user_id, &format!("POST /orders/{id}/cancel"), &());
    let ttl = state.config.shop.idempotency_ttl;
    let cancelled = idempotency::once(&state.db, idem.as_ref(), ttl, StatusCode::OK, async |txn| {
        visible_order(txn, &me, id).await?;
        let o = transition(txn, id, OrderStatus::Cancelled).await?;
        restock(txn, id).await?;
        let open = super::payments::cancel_open_payments(txn, id).await?;
        audit::record(txn, Entry::new("order.cancelled").by(Some(me.user_id)).on("order", id).client(&client)).await?;
        Ok::<_, AppError>(Cancelled { order: full_order(txn, &o).await?, open })
    })
    .await?;
    Ok(cancelled
        .then(async |c| {
            publish_change(&state, "cancelled", c.order.user_id, &c.order);
            state.shop.cache.invalidate(state.redis.as_ref()).await;
            super::payments::cancel_at_provider(&state, c.open).await;
        })
        .await)
}

/// A cancelled order (the response body) and its payments to cancel at the provider once the
/// cancel has committed.
#[derive(Serialize)]
#[serde(transparent)]
struct Cancelled {
    order: OrderOut,
    #[serde(skip)]
    open: Vec<(super::payments::PaymentProvider, String)>,
}

/// Marks a paid order fulfilled (ADMIN).
#[utoipa::path(post, path = "/orders/{id}/fulfill", tag = "orders", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderOut), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
async fn fulfill_order(
    State(state): State<AppState>,
    me: Authorized<perm::ManageAllOrders>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderOut>, AppError> {
    let txn = state.db.begin_write().await?;
    let o = transition(&txn, id, OrderStatus::Fulfilled).await?;
    audit::record(&txn, Entry::new("order.fulfilled").by(Some(me.user_id)).on("order", id).client(&client)).await?;
    let out = full_order(&txn, &o).await?;
    txn.commit().await?;
    publish_change(&state, "fulfilled", o.user_id, &out);
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::OrderStatus::*;

    #[test]
    fn the_status_machine_is_the_contracts() {
        let all = [Pending, Paid, Fulfilled, Cancelled, Refunded];
        let allowed: Vec<_> =
            all.iter().flat_map(|a| all.iter().map(move |b| (*a, *b))).filter(|(a, b)| a.can_become(*b)).collect();
        assert_eq!(allowed, vec![(Pending, Paid), (Pending, Cancelled), (Paid, Fulfilled), (Paid, Refunded)]);
        assert_eq!(super::OrderStatus::iter().collect::<Vec<_>>(), all);
        for s in all {
            let wire = serde_json::to_value(s).unwrap();
            assert_eq!(wire, serde_json::json!(sea_orm::ActiveEnum::to_value(&s)), "stored as sent");
        }
    }
}
