//! The payment routes: extract, call the domain, shape the response.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{Opening, PaymentOut, Refund, SandboxConfirmIn, WebhookAck};
use crate::{
    auth::{Authorized, ClientMeta, perm},
    http::{AppError, Json, Path, Valid},
    idempotency::{self, IdempotencyKey},
    routes,
    shop::orders::OrderOut,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payment))
        .routes(routes!(get_payment))
        .routes(routes!(sandbox_confirm))
        .routes(routes!(refund_order))
        .routes(routes!(webhook))
}

/// Opens a payment for a pending order (its owner only), or returns the payment already open
/// for it. `clientSecret` goes to the client SDK. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/orders/{id}/payments", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 201, body = PaymentOut), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 503)))]
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
async fn create_payment(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    key: IdempotencyKey,
    Path(order_id): Path<Uuid>,
) -> Result<Response, AppError> {
    let key = key.bind(me.user_id, &format!("POST /orders/{order_id}/payments"), &());
    let provider = &state.shop.provider;
    let opened = idempotency::once_after(
        &state.db,
        key.as_ref(),
        state.config.shop.idempotency_ttl,
        StatusCode::CREATED,
        async || Opening::prepare(&state.db, provider, &me, order_id.into()).await,
        async |txn, opening: Opening| opening.record(txn).await,
    )
    .await?;
    Ok(opened.into_response())
}

/// One payment with every step it went through (its owner, or ADMIN).
#[utoipa::path(get, path = "/payments/{id}", tag = "payments", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(payment_id = %id))]
async fn get_payment(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    Path(id): Path<Uuid>,
) -> Result<Json<PaymentOut>, AppError> {
    Ok(Json(super::with_steps(&state.db, &me, id.into()).await?))
}

/// Sandbox only: completes (or fails) a payment the way a card payment confirmed with the
/// client secret would, through the same event path as a provider webhook. 404 when the
/// provider is not `sandbox`.
#[utoipa::path(post, path = "/payments/{id}/sandbox-confirm", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SandboxConfirmIn,
    responses((status = 200, body = PaymentOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(payment_id = %id))]
async fn sandbox_confirm(
    State(state): State<AppState>,
    me: Authorized<perm::PlaceOrders>,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<SandboxConfirmIn>>,
) -> Result<Json<PaymentOut>, AppError> {
    let out = super::confirm(&state, me.user_id.into(), id.into(), &input.client_secret, input.outcome).await?;
    Ok(Json(out))
}

/// Refunds a paid order in full through its provider and returns its stock (ADMIN); the order
/// becomes `refunded`. Also refunds the payment of a *cancelled* order whose payment went through
/// anyway (flagged `needs_refund`); that order stays cancelled. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/orders/{id}/refund", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 200, body = OrderOut), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422), (status = 503)))]
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
async fn refund_order(
    State(state): State<AppState>,
    me: Authorized<perm::ManageAllOrders>,
    client: ClientMeta,
    key: IdempotencyKey,
    Path(order_id): Path<Uuid>,
) -> Result<Response, AppError> {
    let key = key.bind(me.user_id, &format!("POST /orders/{order_id}/refund"), &());
    let refunded = idempotency::once_after(
        &state.db,
        key.as_ref(),
        state.config.shop.idempotency_ttl,
        StatusCode::OK,
        async || Refund::prepare(&state.db, &state.shop.provider, order_id.into()).await,
        async |txn, refund: Refund| refund.record(txn, me.user_id.into(), &client).await,
    )
    .await?;
    Ok(refunded.then(async |refunded| refunded.after_commit(&state).await).await)
}

/// Receives a provider's events. For `stripe`, `Stripe-Signature` is checked over the raw body
/// (several `v1` values, 5 minutes tolerance, constant-time); a bad one is 400. Each event id is
/// applied once. 404 for a provider that is not configured for webhooks.
#[utoipa::path(post, path = "/webhooks/payments/{provider}", tag = "payments",
    params(("provider" = String, Path, description = "`stripe`")),
    request_body(content = Object, description = "The provider's event, verbatim"),
    responses((status = 200, body = WebhookAck), (status = 400), (status = 404)))]
#[tracing::instrument(skip_all, fields(provider = %provider))]
async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAck>, AppError> {
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let outcome = super::receive(&state, &provider, signature, &body).await?;
    Ok(Json(WebhookAck { received: true, outcome: outcome.as_str().into() }))
}
