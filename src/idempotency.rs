//! `Idempotency-Key`, the way Stripe defines it, as one piece every money- or stock-changing
//! route uses: [`once`] (or [`once_after`], for a route that calls a provider first) runs the
//! route's transaction at most once per key, and is the only way in.
//!
//! - A key is scoped to the caller (its user id) and bound to one request: the route and the
//!   parsed body. The same key with the same request replays the stored response (same status,
//!   same body, plus `Idempotent-Replayed: true`); with a different request it is 422.
//! - The key row is inserted *inside the route's own write transaction*, and the response is
//!   stored in that same transaction before it commits. So the effects and the stored response
//!   commit together or not at all, and a second request with the same key waits on the first
//!   one's row (PostgreSQL's unique index; SQLite's single writer) and then replays it. Two
//!   requests with one key never both execute.
//! - Only successful responses are stored. A refused request (400, 409 for stock, …) rolls its
//!   transaction back, key row included, so it can be retried with the same key once the cause
//!   is fixed; that retry is the first execution.
//! - Keys live `IDEMPOTENCY_TTL_SECS` (24 h by default) and are then pruned; an expired key is
//!   a new key.

use std::time::Duration;

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    db::{Db, WriteTxn},
    http::AppError,
};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const MAX_KEY_LEN: usize = 255;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub request_hash: String,
        pub response_status: i32,
        pub response_body: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Why a request with a key cannot run.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used before with another request: 422.
    #[error("this Idempotency-Key was already used with a different request; use a new key")]
    Reused,
    /// The first request with this key has not finished: 409.
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A stored row, or a response, that cannot be what we wrote: a bug, 500.
    #[error("{0}")]
    Broken(String),
}

impl From<IdempotencyError> for AppError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::Reused => AppError::Unprocessable(e.to_string()),
            IdempotencyError::InProgress => AppError::Conflict(e.to_string()),
            IdempotencyError::Db(e) => e.into(),
            IdempotencyError::Broken(why) => AppError::Internal(anyhow::anyhow!(why)),
        }
    }
}

/// The `Idempotency-Key` header, when the client sent one: 1 to 255 visible ASCII characters
/// (400 naming the header otherwise).
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let Some(raw) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        let bad = |m: &str| AppError::invalid_field("Idempotency-Key", m);
        let value = raw.to_str().map_err(|_| bad("must be visible ASCII"))?;
        if value.is_empty() || value.len() > MAX_KEY_LEN {
            return Err(bad("must be 1 to 255 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(bad("must be visible ASCII"));
        }
        Ok(Self(Some(value.to_string())))
    }
}

impl IdempotencyKey {
    /// Binds the key (if any) to the caller and to this request: `route` names the operation
    /// (`"POST /orders"`, with ids of the path) and `request` is the parsed body.
    pub fn bind(self, user_id: Uuid, route: &str, request: &impl Serialize) -> Option<Bound> {
        let key = self.0?;
        let mut hash = Sha256::new();
        hash.update(route.as_bytes());
        hash.update([0]);
        hash.update(serde_json::to_vec(request).unwrap_or_default());
        Some(Bound { user_id, key, hash: hex::encode(hash.finalize()) })
    }
}

/// A key bound to its caller and request.
#[derive(Debug, Clone)]
pub struct Bound {
    user_id: Uuid,
    key: String,
    hash: String,
}

/// What became of a request run through [`once`].
#[derive(Debug)]
pub enum Once<T> {
    /// The key had completed before: its stored response, returned as it is. Nothing ran.
    Replayed(Response),
    /// This request ran and committed: its response (stored with the key, when there is one),
    /// and what the work returned, for the effects that follow the commit.
    Done { response: Response, value: T },
}

impl<T> Once<T> {
    /// The response, after `effects` (realtime events, cache invalidation, provider calls)
    /// when this request ran; a replay runs none of them again.
    pub async fn then(self, effects: impl AsyncFnOnce(T)) -> Response {
        match self {
            Self::Replayed(response) => response,
            Self::Done { response, value } => {
                effects(value).await;
                response
            }
        }
    }
}

/// The response alone, for a route with nothing to do after the commit.
impl<T> IntoResponse for Once<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Replayed(response) | Self::Done { response, .. } => response,
        }
    }
}

/// Runs `work` in a write transaction at most once per key: claims the key, runs `work`, stores
/// its value as the response body with `status`, and commits all of it together. Without a key
/// it simply runs `work` in a transaction. An error from `work` rolls everything back, key
/// included. Effects outside the database belong after it, on [`Once::Done`].
pub async fn once<T, E>(
    db: &Db,
    key: Option<&Bound>,
    ttl: Duration,
    status: StatusCode,
    work: impl AsyncFnOnce(&WriteTxn) -> Result<T, E>,
) -> Result<Once<T>, E>
where
    T: Serialize,
    E: From<DbErr> + From<IdempotencyError>,
{
    let txn = db.begin_write().await?;
    if let Some(replay) = claim(&txn, key, ttl).await? {
        return Ok(Once::Replayed(replay));
    }
    let value = work(&txn).await?;
    let response = respond(&txn, key, status, &value).await?;
    txn.commit().await?;
    Ok(Once::Done { response, value })
}

/// [`once`] for a route that does slow outside work first (a payment provider call): a key that
/// has completed replays *before* `prepare` runs, so a retry never reaches the provider; then
/// `prepare` runs outside any transaction, and `work` gets what it returned inside [`once`].
/// (Two requests racing on one new key may both `prepare`; the provider's own idempotency key
/// must make that harmless.)
pub async fn once_after<P, T, E>(
    db: &Db,
    key: Option<&Bound>,
    ttl: Duration,
    status: StatusCode,
    prepare: impl AsyncFnOnce() -> Result<P, E>,
    work: impl AsyncFnOnce(&WriteTxn, P) -> Result<T, E>,
) -> Result<Once<T>, E>
where
    T: Serialize,
    E: From<DbErr> + From<IdempotencyError>,
{
    if let Some(replay) = peek(db, key, ttl).await? {
        return Ok(Once::Replayed(replay));
    }
    let prepared = prepare().await?;
    once(db, key, ttl, status, async move |txn| work(txn, prepared).await).await
}

/// The rows are read through this: a replay, a key used for another request, or in progress.
fn judge(row: entity::Model, bound: &Bound) -> Result<Response, IdempotencyError> {
    if row.request_hash != bound.hash {
        return Err(IdempotencyError::Reused);
    }
    if row.response_status == 0 {
        return Err(IdempotencyError::InProgress);
    }
    let status =
        u16::try_from(row.response_status).ok().and_then(|s| StatusCode::from_u16(s).ok()).ok_or_else(|| {
            IdempotencyError::Broken(format!("stored idempotent response has status {}", row.response_status))
        })?;
    Ok(json_response(status, row.response_body.into_bytes(), true))
}

fn json_response(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        res.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    res
}

fn cutoff(ttl: Duration) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1))
}

/// A look without claiming: the stored response when this key has already completed, an error
/// when it was used for another request or is in progress, `None` otherwise.
async fn peek<C: ConnectionTrait>(
    db: &C,
    bound: Option<&Bound>,
    ttl: Duration,
) -> Result<Option<Response>, IdempotencyError> {
    let Some(bound) = bound else { return Ok(None) };
    let row = entity::Entity::find_by_id((bound.user_id, bound.key.clone()))
        .filter(entity::Column::CreatedAt.gte(cutoff(ttl)))
        .one(db)
        .await?;
    row.map(|row| judge(row, bound)).transpose()
}

/// Claims the key inside the route's write transaction. `Some(response)` is the stored response
/// to replay; `None` means go ahead, and finish with [`respond`] in the same transaction.
async fn claim<C: ConnectionTrait>(
    txn: &C,
    bound: Option<&Bound>,
    ttl: Duration,
) -> Result<Option<Response>, IdempotencyError> {
    let Some(bound) = bound else { return Ok(None) };
    let now = Utc::now();
    let row = entity::ActiveModel {
        user_id: Set(bound.user_id),
        key: Set(bound.key.clone()),
        request_hash: Set(bound.hash.clone()),
        response_status: Set(0),
        response_body: Set(String::new()),
        created_at: Set(now),
    };
    // One statement: insert the key, or take over an expired one (an expired key is a new key,
    // whether or not the periodic prune has run). A live key is left alone (0 rows). It waits
    // on a concurrent holder of the same key until that one commits or rolls back.
    let expired = Expr::col((entity::Entity, entity::Column::CreatedAt)).lt(cutoff(ttl));
    let inserted = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::UserId, entity::Column::Key])
                .update_columns([
                    entity::Column::RequestHash,
                    entity::Column::ResponseStatus,
                    entity::Column::ResponseBody,
                    entity::Column::CreatedAt,
                ])
                .action_and_where(expired)
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if inserted == 1 {
        return Ok(None);
    }
    let row = entity::Entity::find_by_id((bound.user_id, bound.key.clone()))
        .one(txn)
        .await?
        .ok_or_else(|| IdempotencyError::Broken("idempotency key vanished between insert and read".into()))?;
    judge(row, bound).map(Some)
}

/// The route's response; when a key was claimed, also stored (in `txn`, before it commits) for replays.
async fn respond<C: ConnectionTrait, T: Serialize>(
    txn: &C,
    bound: Option<&Bound>,
    status: StatusCode,
    body: &T,
) -> Result<Response, IdempotencyError> {
    let bytes =
        serde_json::to_vec(body).map_err(|e| IdempotencyError::Broken(format!("response does not serialize: {e}")))?;
    if let Some(bound) = bound {
        let text = String::from_utf8(bytes.clone())
            .map_err(|e| IdempotencyError::Broken(format!("response is not UTF-8: {e}")))?;
        let stored = entity::Entity::update_many()
            .col_expr(entity::Column::ResponseStatus, Expr::value(i32::from(status.as_u16())))
            .col_expr(entity::Column::ResponseBody, Expr::value(text))
            .filter(entity::Column::UserId.eq(bound.user_id))
            .filter(entity::Column::Key.eq(bound.key.as_str()))
            .exec(txn)
            .await?;
        if stored.rows_affected != 1 {
            return Err(IdempotencyError::Broken("claimed idempotency key row is missing".into()));
        }
    }
    Ok(json_response(status, bytes, false))
}

/// Removes keys older than `ttl`. Returns how many.
pub async fn prune<C: ConnectionTrait>(db: &C, ttl: Duration) -> Result<u64, DbErr> {
    let res = entity::Entity::delete_many().filter(entity::Column::CreatedAt.lt(cutoff(ttl))).exec(db).await?;
    Ok(res.rows_affected)
}

/// The periodic job that removes expired keys (every 10 minutes, once across instances).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PruneIdempotencyKeys {}

impl crate::jobs::BackgroundJob for PruneIdempotencyKeys {
    const NAME: &'static str = "prune_idempotency_keys";

    async fn run(&self, state: &crate::state::AppState, _run: crate::jobs::Run) -> anyhow::Result<()> {
        let pruned = prune(&state.db, state.config.shop.idempotency_ttl).await?;
        if pruned > 0 {
            tracing::info!(pruned, "expired idempotency keys removed");
        }
        Ok(())
    }
}
