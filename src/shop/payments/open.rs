//! Opening a payment for a pending order (its customer only), or handing back the one already
//! open for it. Two steps, run by the route through `idempotency::once_after`:
//! [`Opening::prepare`] reads and calls the provider outside any transaction (slow, and retried
//! by the provider's own idempotency key `mash-<orderId>-<attempt>`, so concurrent or retried
//! requests make one intent); [`Opening::record`] stores the payment in the route's transaction,
//! once the order is locked and still pending.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};
use serde_json::json;
use uuid::Uuid;

use super::{Intent, PaymentError, PaymentKind, PaymentOut, PaymentStatus, Provider, payment_out, steps::note};
use crate::{
    auth::AuthUser,
    db::{Db, WriteTxn},
    ids::{OrderId, PaymentId},
    shop::{
        entity::{order, payment},
        orders::{self, OrderError, OrderStatus},
    },
};

/// What [`Opening::prepare`] found: the payment already open, or a new intent for the order.
pub enum Opening {
    Open(payment::Model),
    New { order: order::Model, intent: Intent, provider: super::PaymentProvider },
}

impl Opening {
    /// Checks that `me` may pay for the order and that it is pending, then finds the payment
    /// still open for it with this provider, or asks the provider for a new intent.
    pub async fn prepare(db: &Db, provider: &Provider, me: &AuthUser, order_id: OrderId) -> Result<Self, PaymentError> {
        let o = orders::visible_order(db, me, order_id).await?;
        if o.user_id != me.user_id {
            return Err(PaymentError::NotTheCustomer);
        }
        if o.status != OrderStatus::Pending {
            return Err(PaymentError::NotPayable(o.status));
        }
        let open = payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .filter(payment::Column::Provider.eq(provider.name()))
            .filter(payment::Column::Status.is_in(PaymentStatus::OPEN))
            .order_by_desc(payment::Column::CreatedAt)
            .one(db)
            .await?;
        if let Some(p) = open {
            return Ok(Self::Open(p));
        }
        // One provider key per order and attempt: concurrent or retried requests reach the
        // provider as one intent.
        let attempt = payment::Entity::find().filter(payment::Column::OrderId.eq(order_id)).count(db).await?;
        let intent = provider.create_intent(&o, &format!("mash-{order_id}-{attempt}")).await?;
        Ok(Self::New { order: o, intent, provider: provider.name() })
    }

    /// Stores the payment (unless it was open already) in `txn`, once the order is locked and
    /// still pending (the row lock orders this with a concurrent cancel). The customer's view.
    pub async fn record(self, txn: &WriteTxn) -> Result<PaymentOut, PaymentError> {
        let order_id = match &self {
            Self::Open(p) => p.order_id,
            Self::New { order, .. } => order.id,
        };
        let current =
            crate::db::for_update(order::Entity::find_by_id(order_id)).one(txn).await?.ok_or(OrderError::NotFound)?;
        if current.status != OrderStatus::Pending {
            return Err(PaymentError::NotPayable(current.status));
        }
        let p = match self {
            Self::Open(p) => p,
            Self::New { order, intent, provider } => insert(txn, &order, &intent, provider).await?,
        };
        Ok(payment_out(&p, true))
    }
}

/// Inserts the payment of a new intent, and returns the row for the intent: the one inserted,
/// or the one a concurrent request (which reached the provider with the same key) inserted first.
async fn insert(
    txn: &WriteTxn,
    o: &order::Model,
    intent: &Intent,
    provider: super::PaymentProvider,
) -> Result<payment::Model, PaymentError> {
    let id = PaymentId::from(Uuid::now_v7());
    let now = Utc::now();
    let inserted = payment::Entity::insert(payment::ActiveModel {
        id: Set(id.0),
        order_id: Set(o.id),
        user_id: Set(o.user_id),
        provider: Set(provider),
        provider_ref: Set(intent.provider_ref.clone()),
        client_secret: Set(Some(intent.client_secret.clone())),
        amount_minor: Set(o.total_minor),
        currency: Set(o.currency.clone()),
        status: Set(intent.status),
        kind: Set(PaymentKind::Payment),
        description: Set(Some(format!("order {}", o.id))),
        metadata: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(OnConflict::columns([payment::Column::Provider, payment::Column::ProviderRef]).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    if inserted == 1 {
        let detail = json!({"providerRef": intent.provider_ref});
        note(txn, id, "initiate", o.total_minor, &intent.status.to_string(), detail).await?;
    }
    payment::Entity::find()
        .filter(payment::Column::Provider.eq(provider))
        .filter(payment::Column::ProviderRef.eq(intent.provider_ref.as_str()))
        .one(txn)
        .await?
        .ok_or(PaymentError::Vanished("payment vanished after insert"))
}
