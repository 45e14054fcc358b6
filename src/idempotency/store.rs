//! `idempotency_keys`: a key's row is claimed in the route's transaction (response status 0
//! while it runs), then holds the stored response for replays until it expires.

use std::time::Duration;

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::Serialize;

use super::{Bound, IdempotencyError, REPLAYED_HEADER, entity};

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
pub(super) async fn peek<C: ConnectionTrait>(
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
pub(super) async fn claim<C: ConnectionTrait>(
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
pub(super) async fn respond<C: ConnectionTrait, T: Serialize>(
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
