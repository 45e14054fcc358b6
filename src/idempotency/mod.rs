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
//!
//! The pieces: [`IdempotencyKey`] (the header) bound into a [`Bound`] key, the stored rows
//! (`store`), and [`once`] / [`once_after`], the only way a route runs under a key.

pub mod entity;
mod error;
mod key;
mod store;

use std::time::Duration;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use sea_orm::DbErr;
use serde::Serialize;

pub use error::IdempotencyError;
pub use key::{Bound, HEADER, IdempotencyKey, REPLAYED_HEADER};
pub use store::{PruneIdempotencyKeys, prune};

use crate::db::{Db, WriteTxn};

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
    if let Some(replay) = store::claim(&txn, key, ttl).await? {
        return Ok(Once::Replayed(replay));
    }
    let value = work(&txn).await?;
    let response = store::respond(&txn, key, status, &value).await?;
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
    if let Some(replay) = store::peek(db, key, ttl).await? {
        return Ok(Once::Replayed(replay));
    }
    let prepared = prepare().await?;
    once(db, key, ttl, status, async move |txn| work(txn, prepared).await).await
}
