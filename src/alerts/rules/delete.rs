//! Deleting a rule (a soft delete): its evaluation state goes and its open alerts are
//! resolved, as when it is disabled ([`resolve_open_alerts`]).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

use crate::{
    alerts::{
        Change,
        cache::rules_changed,
        delivery,
        entity::{AlertStatus, alert, rule, rule_state},
        error::RuleError,
        transition::transition,
    },
    audit::{self, Entry},
    auth::ClientMeta,
    ids::UserId,
    state::AppState,
};

/// Deletes rule `r`, `by` a person.
pub async fn delete(state: &AppState, r: &rule::Model, by: UserId, client: &ClientMeta) -> Result<(), RuleError> {
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let gone = rule::Entity::update_many()
        .col_expr(rule::Column::DeletedAt, Expr::value(Some(now)))
        .col_expr(rule::Column::UpdatedAt, Expr::value(now))
        .filter(rule::Column::Id.eq(r.id))
        .filter(rule::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    if gone.rows_affected == 0 {
        return Err(RuleError::NotFound);
    }
    rule_state::Entity::delete_many().filter(rule_state::Column::RuleId.eq(r.id)).exec(&txn).await?;
    resolve_open_alerts(&txn, state, r, by, now).await?;
    let entry = Entry::new("alert_rule.delete").by(Some(by.into())).on("alert_rule", r.id).client(client);
    audit::record(&txn, entry).await?;
    txn.commit().await?;
    state.jobs.wake();
    rules_changed(state, r.grower_id.into()).await;
    Ok(())
}

/// Resolves every open alert of a rule that stops watching (disabled or deleted), `by` the
/// person who stopped it, and enqueues the news, inside `txn`.
pub(super) async fn resolve_open_alerts(
    txn: &DatabaseTransaction,
    state: &AppState,
    r: &rule::Model,
    by: UserId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let open = alert::Entity::find()
        .filter(alert::Column::RuleId.eq(r.id))
        .filter(alert::Column::Status.ne(AlertStatus::Resolved))
        .all(txn)
        .await?;
    let mut changes = Vec::new();
    for a in open {
        if let Some(done) = transition(txn, a.id.into(), AlertStatus::Resolved, Some(by), now).await? {
            changes.push((Change::Resolved, done));
        }
    }
    delivery::notify(txn, state, r.grower_id, &changes, None).await
}
