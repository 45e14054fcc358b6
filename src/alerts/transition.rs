//! An alert's status moves: `active` → `acknowledged` (someone is on it), `active` or
//! `acknowledged` → `resolved` (by a person, by the rule when the condition clears and it
//! auto-resolves, or when its rule is disabled or deleted). [`transition`] is the one
//! conditional UPDATE behind every move; [`by_person`] is `POST /alerts/{id}/ack|resolve`.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use super::{
    Change,
    entity::{AlertStatus, alert},
    error::AlertError,
};
use crate::{
    audit::{self, Entry},
    auth::ClientMeta,
    ids::{AlertId, UserId},
    state::AppState,
};

/// Moves alert `id` to `to`, `by` a person (or the rule, `None`), if its current status allows
/// it ([`AlertStatus::moves_from`]): the alert as stored after the move, or `None` when its
/// status does not allow it (already acknowledged, already resolved, gone). One statement, so
/// two concurrent moves cannot both happen.
pub async fn transition<C: ConnectionTrait>(
    db: &C,
    id: AlertId,
    to: AlertStatus,
    by: Option<UserId>,
    now: DateTime<Utc>,
) -> Result<Option<alert::Model>, DbErr> {
    let (at, who) = match to {
        AlertStatus::Acknowledged => (alert::Column::AcknowledgedAt, alert::Column::AcknowledgedBy),
        AlertStatus::Resolved => (alert::Column::ResolvedAt, alert::Column::ResolvedBy),
        // Nothing moves back to active.
        AlertStatus::Active => return Ok(None),
    };
    let moved = alert::Entity::update_many()
        .col_expr(alert::Column::Status, Expr::value(to))
        .col_expr(at, Expr::value(Some(now)))
        .col_expr(who, Expr::value(by.map(uuid::Uuid::from)))
        .col_expr(alert::Column::UpdatedAt, Expr::value(now))
        .filter(alert::Column::Id.eq(id))
        .filter(alert::Column::Status.is_in(to.moves_from().iter().copied()))
        .exec_with_returning(db)
        .await?;
    Ok(moved.into_iter().next())
}

/// A person acknowledges or resolves an alert: the move, its audit entry and its deliveries
/// commit together. Acknowledging an acknowledged alert changes nothing and answers it as it
/// is; any other move its status does not allow is [`AlertError::AlreadyResolved`].
pub async fn by_person(
    state: &AppState,
    id: AlertId,
    to: AlertStatus,
    by: UserId,
    client: &ClientMeta,
) -> Result<alert::Model, AlertError> {
    let txn = state.db.begin_write().await?;
    let Some(moved) = transition(&txn, id, to, Some(by), state.clock.now()).await? else {
        let current = alert::Entity::find_by_id(id).one(&txn).await?;
        txn.rollback().await?;
        return match current {
            Some(a) if to == AlertStatus::Acknowledged && a.status == AlertStatus::Acknowledged => Ok(a),
            Some(_) => Err(AlertError::AlreadyResolved),
            None => Err(AlertError::NotFound),
        };
    };
    let (action, change) = match moved.status {
        AlertStatus::Acknowledged => ("alert.acknowledge", Change::Acknowledged),
        AlertStatus::Resolved => ("alert.resolve", Change::Resolved),
        AlertStatus::Active => unreachable!("transition never moves an alert to active"),
    };
    audit::record(&txn, Entry::new(action).by(Some(by.into())).on("alert", id).client(client)).await?;
    super::delivery::notify(&txn, state, moved.grower_id, &[(change, moved.clone())], None).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(moved)
}
