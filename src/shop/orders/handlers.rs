//! The `/orders` routes: extract, call the domain, shape the response.

use axum::{extract::State, http::StatusCode, response::Response};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Basket, OrderIn, OrderOut, OrderQuery};
use crate::{
    auth::{Authorized, ClientMeta, perm},
    http::{AppError, Json, Page, Path, Query, Valid},
    idempotency::{self, IdempotencyKey},
    routes,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(fulfill_order))
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
    let basket = Basket::new(&input)?;
    let key = key.bind(me.user_id, "POST /orders", &input);
    let shop = &state.config.shop;
    let placed = idempotency::once(&state.db, key.as_ref(), shop.idempotency_ttl, StatusCode::CREATED, async |txn| {
        super::place(txn, shop, me.user_id.into(), &basket).await
    })
    .await?;
    Ok(placed.then(async |placed| placed.after_commit(&state).await).await)
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
    let filter = q.filter(&me)?;
    let (data, total) = super::list(&state.db, &filter).await?;
    Ok(Json(Page::new(data, &filter.page, total)))
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
    let o = super::visible_order(&state.db, &me, id.into()).await?;
    Ok(Json(super::full_order(&state.db, &o).await?))
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
    let key = key.bind(me.user_id, &format!("POST /orders/{id}/cancel"), &());
    let ttl = state.config.shop.idempotency_ttl;
    let cancelled = idempotency::once(&state.db, key.as_ref(), ttl, StatusCode::OK, async |txn| {
        super::cancel(txn, &me, id.into(), &client).await
    })
    .await?;
    Ok(cancelled.then(async |cancelled| cancelled.after_commit(&state).await).await)
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
    Ok(Json(super::fulfil(&state, me.user_id.into(), id.into(), &client).await?))
}
