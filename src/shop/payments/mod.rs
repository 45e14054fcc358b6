//! Payments: `payments` and `payment_transactions` (seed 004) behind a provider interface with
//! two implementations, `sandbox` (the default, fully local) and `stripe` (PaymentIntents).
//!
//! - `POST /orders/{id}/payments` opens a payment for a pending order, or returns the one
//!   already open. The provider call carries an idempotency key derived from the order (and
//!   how many payments it had), so retries and races create one intent at the provider.
//! - Provider events (Stripe webhooks, sandbox confirmations, refunds we start) all go through
//!   [`apply`]: one transaction records the event id (each is applied once), moves the payment
//!   and the order together, and notes the step in `payment_transactions`.

pub mod stripe;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DeriveActiveEnum, EntityTrait, EnumIter, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::{OnConflict, StringLen},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    entity::{order, payment, payment_transaction, webhook_event},
    orders::{self, OrderChange, OrderError, OrderOut, OrderStatus},
};
use crate::{
    audit::{self, Entry},
    auth::{Authorized, ClientMeta, perm},
    config::{PaymentProviderKind, ShopConfig},
    http::{AppError, Json, Path, Valid},
    idempotency::{self, IdempotencyKey},
    metrics::WebhookLabels,
    money::Money,
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

impl PaymentStatus {
    /// Still payable: the customer can (re)try with the same client secret.
    pub const OPEN: [PaymentStatus; 3] = [Self::Pending, Self::Processing, Self::Failed];

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

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

/// Who moves the money: `payments.provider` and `webhook_events.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PaymentProvider {
    #[sea_orm(string_value = "sandbox")]
    Sandbox,
    #[sea_orm(string_value = "stripe")]
    Stripe,
}

/// `payments.type`: what the row is. Only payments are stored (a refund is a step of its
/// payment, in `payment_transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PaymentKind {
    #[sea_orm(string_value = "payment")]
    Payment,
}

display_as_stored!(PaymentStatus, PaymentProvider, PaymentKind);

/// What a provider returns for a new payment.
#[derive(Debug, Clone)]
pub struct Intent {
    pub provider_ref: String,
    pub client_secret: String,
    pub status: PaymentStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the request (4xx): shown to the client as 422.
    #[error("{0}")]
    Rejected(String),
    /// The provider could not be reached or failed (after retries): 503.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ProviderError> for AppError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Rejected(m) => AppError::Unprocessable(format!("the payment provider refused: {m}")),
            ProviderError::Unavailable(m) => {
                tracing::warn!(error = %m, "payment provider unavailable");
                AppError::Unavailable("the payment provider is unavailable; try again".into())
            }
        }
    }
}

/// A provider event, whatever its source.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub id: String,
    pub event_type: String,
    pub kind: EventKind,
    pub provider_ref: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Succeeded,
    Failed,
    Processing,
    Canceled,
    Refunded,
    PartiallyRefunded,
    Other,
}

/// The configured provider.
pub enum Provider {
    Sandbox,
    Stripe(stripe::Client),
}

impl Provider {
    pub fn from_config(cfg: &ShopConfig) -> anyhow::Result<Self> {
        Ok(match cfg.payment_provider {
            PaymentProviderKind::Sandbox => Self::Sandbox,
            PaymentProviderKind::Stripe => {
                let key =
                    cfg.stripe_secret_key.clone().ok_or_else(|| anyhow::anyhow!("STRIPE_SECRET_KEY is not set"))?;
                Self::Stripe(stripe::Client::new(&cfg.stripe_api_base, key)?)
            }
        })
    }

    pub fn name(&self) -> PaymentProvider {
        match self {
            Self::Sandbox => PaymentProvider::Sandbox,
            Self::Stripe(_) => PaymentProvider::Stripe,
        }
    }

    /// `key` is the provider's idempotency key; every parameter sent with it is derived from the
    /// order alone, so a retry or a concurrent request with the same key is the same request.
    async fn create_intent(&self, o: &order::Model, key: &str) -> Result<Intent, ProviderError> {
        match self {
            Self::Sandbox => {
                let mut secret = [0u8; 24];
                rand::rng().fill_bytes(&mut secret);
                let provider_ref = format!("sb_{}", key.trim_start_matches("mash-"));
                Ok(Intent {
                    client_secret: format!("{provider_ref}_secret_{}", hex::encode(secret)),
                    provider_ref,
                    status: PaymentStatus::Pending,
                })
            }
            Self::Stripe(client) => {
                let metadata = [("order_id", o.id.to_string()), ("user_id", o.user_id.to_string())];
                client.create_intent(o.total_minor, &o.currency, &metadata, key).await
            }
        }
    }

    async fn refund(&self, p: &payment::Model) -> Result<String, ProviderError> {
        match self {
            Self::Sandbox => Ok(format!("sb_re_{}", p.id.simple())),
            Self::Stripe(client) => client.refund(&p.provider_ref, &format!("mash-refund-{}", p.id)).await,
        }
    }

    async fn cancel(&self, provider_ref: &str) -> Result<(), ProviderError> {
        match self {
            Self::Sandbox => Ok(()),
            Self::Stripe(client) => client.cancel(provider_ref, &format!("mash-cancel-{provider_ref}")).await,
        }
    }
}

/// A payment as its owner sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOut {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub provider: String,
    /// For the client SDK (Stripe.js `confirmPayment`, or `sandbox-confirm`). Only its owner sees it.
    pub client_secret: Option<String>,
    pub status: PaymentStatus,
    pub amount: Money,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every step, oldest first (only on `GET /payments/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<TransactionOut>>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionOut {
    pub id: Uuid,
    pub transaction_type: String,
    pub amount: Money,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

fn payment_out(p: &payment::Model, owner_view: bool) -> PaymentOut {
    PaymentOut {
        payment_id: p.id,
        order_id: p.order_id,
        provider: p.provider.to_string(),
        client_secret: if owner_view { p.client_secret.clone() } else { None },
        status: p.status,
        amount: Money(p.amount_minor),
        currency: p.currency.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        transactions: None,
    }
}

/// Notes one step of a payment.
async fn note<C: ConnectionTrait>(
    txn: &C,
    payment_id: Uuid,
    kind: &str,
    amount_minor: i64,
    status: &str,
    metadata: serde_json::Value,
) -> Result<(), sea_orm::DbErr> {
    payment_transaction::Entity::insert(payment_transaction::ActiveModel {
        id: Set(Uuid::now_v7()),
        payment_id: Set(payment_id),
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

/// Moves a payment to `to` when it is in a status that allows it. Returns whether it moved.
async fn move_payment<C: ConnectionTrait>(txn: &C, id: Uuid, to: PaymentStatus) -> Result<bool, sea_orm::DbErr> {
    let res = payment::Entity::update_many()
        .col_expr(payment::Column::Status, sea_orm::sea_query::Expr::value(to))
        .col_expr(payment::Column::UpdatedAt, sea_orm::sea_query::Expr::value(Utc::now()))
        .filter(payment::Column::Id.eq(id))
        .filter(payment::Column::Status.is_in(to.reachable_from().iter().copied()))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
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
    let idem = key.bind(me.user_id, &format!("POST /orders/{order_id}/payments"), &());
    let ttl = state.config.shop.idempotency_ttl;
    let provider = &state.shop.provider;
    let prepare = async || {
        let o = orders::visible_order(&state.db, &me, order_id.into()).await?;
        if o.user_id != me.user_id {
            return Err(AppError::Forbidden("only the customer who placed an order can pay for it".into()));
        }
        if o.status != OrderStatus::Pending {
            return Err(AppError::Conflict(format!("order is {}; only a pending order can be paid", o.status)));
        }
        let open = payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .filter(payment::Column::Provider.eq(provider.name()))
            .filter(payment::Column::Status.is_in(PaymentStatus::OPEN))
            .order_by_desc(payment::Column::CreatedAt)
            .one(&state.db)
            .await?;
        // The provider's idempotency key: one per order and attempt, so concurrent or retried
        // requests reach the provider as one intent.
        let attempt = payment::Entity::find().filter(payment::Column::OrderId.eq(order_id)).count(&state.db).await?;
        let intent = match &open {
            Some(_) => None,
            None => Some(provider.create_intent(&o, &format!("mash-{order_id}-{attempt}")).await?),
        };
        Ok((o, open, intent))
    };
    let record = async |txn: &crate::db::WriteTxn,
                        (o, open, intent): (order::Model, Option<payment::Model>, Option<Intent>)| {
        let payment_id = Uuid::now_v7();
        // The order must still be pending; the row lock orders us with a cancel.
        let current = crate::db::for_update(order::Entity::find_by_id(order_id))
            .one(txn)
            .await?
            .ok_or_else(|| AppError::NotFound("order not found".into()))?;
        if current.status != OrderStatus::Pending {
            return Err(AppError::Conflict(format!("order is {}; only a pending order can be paid", current.status)));
        }
        let p = match (open, intent) {
            (Some(p), _) => p,
            (None, Some(intent)) => {
                let now = Utc::now();
                let inserted = payment::Entity::insert(payment::ActiveModel {
                    id: Set(payment_id),
                    order_id: Set(order_id),
                    user_id: Set(me.user_id),
                    provider: Set(provider.name()),
                    provider_ref: Set(intent.provider_ref.clone()),
                    client_secret: Set(Some(intent.client_secret.clone())),
                    amount_minor: Set(o.total_minor),
                    currency: Set(o.currency.clone()),
                    status: Set(intent.status),
                    kind: Set(PaymentKind::Payment),
                    description: Set(Some(format!("order {order_id}"))),
                    metadata: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                })
                .on_conflict(
                    OnConflict::columns([payment::Column::Provider, payment::Column::ProviderRef])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
                if inserted == 1 {
                    note(
                        txn,
                        payment_id,
                        "initiate",
                        o.total_minor,
                        &intent.status.to_string(),
                        json!({"providerRef": intent.provider_ref}),
                    )
                    .await?;
                }
                // A concurrent request reached the provider with the same key and inserted first.
                payment::Entity::find()
                    .filter(payment::Column::Provider.eq(provider.name()))
                    .filter(payment::Column::ProviderRef.eq(intent.provider_ref.as_str()))
                    .one(txn)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("payment vanished after insert"))?
            }
            (None, None) => unreachable!("an intent is created whenever no payment is open"),
        };
        Ok(payment_out(&p, true))
    };
    let opened = idempotency::once_after(&state.db, idem.as_ref(), ttl, StatusCode::CREATED, prepare, record).await?;
    Ok(opened.then(async |_| {}).await)
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
    let p = payment::Entity::find_by_id(id).one(&state.db).await?;
    let p = match p {
        Some(p) if p.user_id == me.user_id || me.role.can(crate::auth::Permission::ManageAllOrders) => p,
        _ => return Err(AppError::NotFound("payment not found".into())),
    };
    let steps = payment_transaction::Entity::find()
        .filter(payment_transaction::Column::PaymentId.eq(id))
        .order_by_asc(payment_transaction::Column::CreatedAt)
        .order_by_asc(payment_transaction::Column::Id)
        .all(&state.db)
        .await?;
    let mut out = payment_out(&p, p.user_id == me.user_id);
    out.transactions = Some(
        steps
            .into_iter()
            .map(|t| TransactionOut {
                id: t.id,
                transaction_type: t.transaction_type,
                amount: Money(t.amount_minor),
                status: t.status,
                metadata: t.metadata,
                created_at: t.created_at,
            })
            .collect(),
    );
    Ok(Json(out))
}

#[derive(Debug, Deserialize, Serialize, garde::Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxConfirmIn {
    /// The payment's `clientSecret`.
    #[garde(length(min = 1, max = 512))]
    pub client_secret: String,
    /// What the simulated card does: `succeeded` (the default) or `failed`.
    #[garde(skip)]
    #[serde(default)]
    pub outcome: SandboxOutcome,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxOutcome {
    #[default]
    Succeeded,
    Failed,
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
    let p = payment::Entity::find_by_id(id)
        .filter(payment::Column::Provider.eq(PaymentProvider::Sandbox))
        .one(&state.db)
        .await?
        .filter(|p| p.user_id == me.user_id)
        .ok_or_else(|| AppError::NotFound("payment not found".into()))?;
    let secret = p.client_secret.as_deref().unwrap_or_default();
    if !crate::util::constant_time_eq(secret.as_bytes(), input.client_secret.as_bytes()) {
        return Err(AppError::invalid_field("clientSecret", "does not match this payment"));
    }
    if !p.status.is_open() {
        return Err(AppError::Conflict(format!("payment is {}; it can no longer be confirmed", p.status)));
    }
    let (kind, event_type) = match input.outcome {
        SandboxOutcome::Succeeded => (EventKind::Succeeded, "payment_intent.succeeded"),
        SandboxOutcome::Failed => (EventKind::Failed, "payment_intent.payment_failed"),
    };
    let event = ProviderEvent {
        id: format!("sb_evt_{}", Uuid::now_v7().simple()),
        event_type: event_type.into(),
        kind,
        provider_ref: p.provider_ref.clone(),
        amount_minor: Some(p.amount_minor),
        currency: Some(p.currency.clone()),
        detail: matches!(input.outcome, SandboxOutcome::Failed).then(|| "sandbox card declined".to_string()),
    };
    apply(&state, PaymentProvider::Sandbox, &event).await?;
    let p = payment::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(|| anyhow::anyhow!("payment vanished"))?;
    Ok(Json(payment_out(&p, true)))
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
    let idem = key.bind(me.user_id, &format!("POST /orders/{order_id}/refund"), &());
    let ttl = state.config.shop.idempotency_ttl;
    let provider = &state.shop.provider;
    let prepare = async || {
        let o = order::Entity::find_by_id(order_id)
            .one(&state.db)
            .await?
            .ok_or_else(|| AppError::NotFound("order not found".into()))?;
        if !matches!(o.status, OrderStatus::Paid | OrderStatus::Cancelled) {
            return Err(AppError::Conflict(format!("order is {}; only a paid order can be refunded", o.status)));
        }
        let p = payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .filter(payment::Column::Status.eq(PaymentStatus::Completed))
            .one(&state.db)
            .await?
            .ok_or_else(|| {
                AppError::Conflict(format!("order is {} and has no completed payment to refund", o.status))
            })?;
        if p.provider != provider.name() {
            return Err(AppError::Conflict(format!(
                "order was paid with {}, which is not the configured provider",
                p.provider
            )));
        }
        let refund_ref = provider.refund(&p).await?;
        let event = ProviderEvent {
            id: format!("mash-refund-{}", p.id),
            event_type: "refund.created".into(),
            kind: EventKind::Refunded,
            provider_ref: p.provider_ref.clone(),
            amount_minor: Some(p.amount_minor),
            currency: Some(p.currency.clone()),
            detail: Some(refund_ref),
        };
        Ok((p, event))
    };
    let record = async |txn: &crate::db::WriteTxn, (p, event): (payment::Model, ProviderEvent)| {
        let outcome = apply_in(txn, provider.name(), &event).await?;
        audit::record(
            txn,
            Entry::new("order.refunded")
                .by(Some(me.user_id))
                .on("order", order_id)
                .details(json!({"paymentId": p.id, "amount": Money(p.amount_minor), "outcome": outcome.as_str()}))
                .client(&client),
        )
        .await?;
        let o = order::Entity::find_by_id(order_id).one(txn).await?.ok_or_else(|| anyhow::anyhow!("order vanished"))?;
        let order: OrderOut = orders::full_order(txn, &o).await?;
        Ok::<_, AppError>(Refunded { order, event, outcome })
    };
    let refunded = idempotency::once_after(&state.db, idem.as_ref(), ttl, StatusCode::OK, prepare, record).await?;
    Ok(refunded
        .then(async |r| {
            if r.outcome == Outcome::Applied {
                announce(&state, provider.name(), &r.event).await;
            }
            super::catalogue_changed(&state).await;
        })
        .await)
}

/// A refunded order (the response body), and the event that refunded it for the announcement
/// after the commit.
#[derive(Serialize)]
#[serde(transparent)]
struct Refunded {
    order: OrderOut,
    #[serde(skip)]
    event: ProviderEvent,
    #[serde(skip)]
    outcome: Outcome,
}

/// The webhook's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAck {
    pub received: bool,
    /// `applied`, `duplicate` (this event id was applied before) or `ignored` (not an event
    /// we act on, or not one of our payments).
    pub outcome: String,
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
    let count = |outcome: &'static str| {
        state.metrics.payment_webhooks.get_or_create(&WebhookLabels { provider: "stripe", outcome }).inc();
    };
    let secret = match (provider.as_str(), &state.config.shop.stripe_webhook_secret) {
        ("stripe", Some(secret)) => secret,
        _ => return Err(AppError::NotFound("no webhooks are configured for this provider".into())),
    };
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if let Err(e) = stripe::verify_signature(
        secret.expose(),
        header,
        &body,
        Utc::now().timestamp(),
        state.config.shop.webhook_tolerance,
    ) {
        count("bad_signature");
        return Err(AppError::invalid_field("Stripe-Signature", e.to_string()));
    }
    let event = stripe::parse_event(&body).map_err(AppError::bad_request)?;
    let outcome = apply(&state, PaymentProvider::Stripe, &event).await?;
    count(outcome.as_str());
    Ok(Json(WebhookAck { received: true, outcome: outcome.as_str().into() }))
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// Applies one provider event in its own transaction (see [`apply_in`]).
pub async fn apply(state: &AppState, provider: PaymentProvider, event: &ProviderEvent) -> Result<Outcome, AppError> {
    let txn = state.db.begin_write().await?;
    let outcome = apply_in(&txn, provider, event).await?;
    txn.commit().await?;
    if outcome == Outcome::Applied {
        announce(state, provider, event).await;
        if matches!(event.kind, EventKind::Refunded) {
            // Stock came back.
            state.shop.cache.invalidate(state.redis.as_ref()).await;
        }
    }
    Ok(outcome)
}

/// After an applied event has committed: tells the order's owner (`/orders/{userId}`) that the
/// order was paid, its payment failed, or it was refunded, when the order shows it (a payment
/// that arrives after a cancellation does not make the order paid).
async fn announce(state: &AppState, provider: PaymentProvider, event: &ProviderEvent) {
    let change = match event.kind {
        EventKind::Succeeded => OrderChange::Paid,
        EventKind::Failed => OrderChange::PaymentFailed,
        EventKind::Refunded => OrderChange::Refunded,
        _ => return,
    };
    let found = async {
        let Some(p) = payment::Entity::find()
            .filter(payment::Column::Provider.eq(provider))
            .filter(payment::Column::ProviderRef.eq(event.provider_ref.as_str()))
            .one(&state.db)
            .await?
        else {
            return Ok(None);
        };
        let Some(o) = order::Entity::find_by_id(p.order_id).one(&state.db).await? else { return Ok(None) };
        let shows = match change {
            OrderChange::Paid => o.status == OrderStatus::Paid,
            OrderChange::Refunded => o.status == OrderStatus::Refunded,
            _ => true,
        };
        if !shows {
            return Ok(None);
        }
        Ok(Some(orders::full_order(&state.db, &o).await?))
    }
    .await;
    match found {
        Ok(Some(out)) => orders::publish_change(state, change, &out),
        Ok(None) => {}
        Err::<_, sea_orm::DbErr>(e) => tracing::warn!(error = %e, "could not announce an order change"),
    }
}

/// Applies one provider event inside `txn`: records its id (a second delivery is `Duplicate`
/// and changes nothing), moves the payment and its order together, and notes the step.
pub async fn apply_in<C: ConnectionTrait>(
    txn: &C,
    provider: PaymentProvider,
    event: &ProviderEvent,
) -> Result<Outcome, AppError> {
    let first = webhook_event::Entity::insert(webhook_event::ActiveModel {
        provider: Set(provider),
        event_id: Set(event.id.chars().take(255).collect()),
        event_type: Set(event.event_type.chars().take(128).collect()),
        received_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([webhook_event::Column::Provider, webhook_event::Column::EventId]).do_nothing().to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    if first == 0 {
        return Ok(Outcome::Duplicate);
    }
    if event.kind == EventKind::Other || event.provider_ref.is_empty() {
        return Ok(Outcome::Ignored);
    }
    let Some(p) = payment::Entity::find()
        .filter(payment::Column::Provider.eq(provider))
        .filter(payment::Column::ProviderRef.eq(event.provider_ref.as_str()))
        .one(txn)
        .await?
    else {
        tracing::info!(event_id = %event.id, provider_ref = %event.provider_ref, "event for a payment we do not know; ignored");
        return Ok(Outcome::Ignored);
    };
    let meta = |extra: serde_json::Value| {
        let mut m = json!({"eventId": event.id, "eventType": event.event_type});
        if let (Some(obj), Some(more)) = (m.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        if let Some(detail) = &event.detail {
            m["detail"] = json!(detail);
        }
        m
    };
    match event.kind {
        EventKind::Succeeded => {
            let amount = event.amount_minor.unwrap_or(-1);
            let currency_ok = event.currency.as_deref().is_none_or(|c| c.eq_ignore_ascii_case(&p.currency));
            if amount != p.amount_minor || !currency_ok {
                tracing::error!(payment_id = %p.id, received = amount, expected = p.amount_minor, "payment amount does not match the order");
                note(
                    txn,
                    p.id,
                    "amount_mismatch",
                    amount.max(0),
                    "rejected",
                    meta(json!({"expected": Money(p.amount_minor)})),
                )
                .await?;
                return Ok(Outcome::Applied);
            }
            if !move_payment(txn, p.id, PaymentStatus::Completed).await? {
                note(txn, p.id, "payment", amount, "ignored", meta(json!({"paymentStatus": p.status}))).await?;
                return Ok(Outcome::Applied);
            }
            note(txn, p.id, "payment", amount, "succeeded", meta(json!({}))).await?;
            match orders::transition(txn, p.order_id.into(), OrderStatus::Paid).await {
                Ok(_) => {}
                Err(e @ OrderError::CannotBecome { .. }) => {
                    let why = e.to_string();
                    // Paid after the order was cancelled: the money must go back.
                    tracing::warn!(payment_id = %p.id, order_id = %p.order_id, %why, "payment succeeded for an order that is not pending; it needs a refund");
                    note(txn, p.id, "order_not_payable", amount, "needs_refund", meta(json!({"reason": why}))).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        EventKind::Failed => {
            let moved = move_payment(txn, p.id, PaymentStatus::Failed).await?;
            note(txn, p.id, "payment", p.amount_minor, if moved { "failed" } else { "ignored" }, meta(json!({})))
                .await?;
        }
        EventKind::Processing => {
            let moved = move_payment(txn, p.id, PaymentStatus::Processing).await?;
            note(txn, p.id, "payment", p.amount_minor, if moved { "processing" } else { "ignored" }, meta(json!({})))
                .await?;
        }
        EventKind::Canceled => {
            let moved = move_payment(txn, p.id, PaymentStatus::Cancelled).await?;
            note(txn, p.id, "cancel", p.amount_minor, if moved { "cancelled" } else { "ignored" }, meta(json!({})))
                .await?;
        }
        EventKind::PartiallyRefunded => {
            note(txn, p.id, "refund", event.amount_minor.unwrap_or(0), "partial", meta(json!({}))).await?;
        }
        EventKind::Refunded => {
            if !move_payment(txn, p.id, PaymentStatus::Refunded).await? {
                note(txn, p.id, "refund", p.amount_minor, "ignored", meta(json!({"paymentStatus": p.status}))).await?;
                return Ok(Outcome::Applied);
            }
            note(txn, p.id, "refund", event.amount_minor.unwrap_or(p.amount_minor), "succeeded", meta(json!({})))
                .await?;
            match orders::transition(txn, p.order_id.into(), OrderStatus::Refunded).await {
                Ok(_) => orders::restock(txn, p.order_id.into()).await?,
                // Refunded after fulfilment: the goods are gone, the stock stays as it is.
                Err(e @ OrderError::CannotBecome { .. }) => {
                    let why = e.to_string();
                    note(txn, p.id, "order_not_refundable", p.amount_minor, "noted", meta(json!({"reason": why})))
                        .await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        EventKind::Other => unreachable!("handled above"),
    }
    Ok(Outcome::Applied)
}

/// A payment cancelled with its order, to stop at the provider after the commit.
#[derive(Debug)]
pub struct OpenPayment(PaymentProvider, String);

/// Cancels the open payments of an order being cancelled, inside its transaction. Returns the
/// provider references to cancel at the provider once the transaction has committed.
pub async fn cancel_open_payments<C: ConnectionTrait>(
    txn: &C,
    order_id: crate::ids::OrderId,
) -> Result<Vec<OpenPayment>, sea_orm::DbErr> {
    let open = payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::Status.is_in(PaymentStatus::OPEN))
        .all(txn)
        .await?;
    let mut refs = Vec::new();
    for p in open {
        if move_payment(txn, p.id, PaymentStatus::Cancelled).await? {
            note(txn, p.id, "cancel", p.amount_minor, "cancelled", json!({"reason": "order cancelled"})).await?;
            refs.push(OpenPayment(p.provider, p.provider_ref));
        }
    }
    Ok(refs)
}

/// Best effort, after commit: cancels intents at the provider so they can no longer be paid.
/// A failure is logged; a payment that still succeeds is recorded as needing a refund.
pub async fn cancel_at_provider(state: &AppState, refs: Vec<OpenPayment>) {
    let provider = &state.shop.provider;
    for OpenPayment(name, provider_ref) in refs {
        if name != provider.name() {
            continue;
        }
        if let Err(e) = provider.cancel(&provider_ref).await {
            tracing::warn!(error = %e, %provider_ref, "could not cancel the payment at the provider");
        }
    }
}
