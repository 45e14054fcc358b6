//! Turning a (rule, device)'s outcomes into alert changes: the first firing opens an alert,
//! repeats while it is open are folded into one update, a clear resolves it when the rule
//! auto-resolves ([`transition`]). One open alert per (rule, device).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    Pair,
    rows::{CHUNK, pair_condition},
};
use crate::{
    alerts::{
        Change,
        engine::{self, Observed, Outcome},
        entity::{AlertStatus, alert, rule},
        transition::transition,
    },
    ids::DeviceId,
};

/// The (rule, device) whose outcomes are applied: the rule as stored and as judged.
#[derive(Clone, Copy)]
pub(super) struct Subject<'a> {
    pub rule: &'a rule::Model,
    pub judge: &'a engine::Rule,
    pub device_id: DeviceId,
}

/// The open alert of each pair.
pub(super) async fn open_alerts(
    txn: &DatabaseTransaction,
    keys: &[Pair],
) -> Result<HashMap<Pair, alert::Model>, DbErr> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let wanted: HashSet<&Pair> = chunk.iter().collect();
        let rows = alert::Entity::find()
            .filter(alert::Column::Status.ne(AlertStatus::Resolved))
            .filter(pair_condition(chunk, alert::Column::RuleId, alert::Column::DeviceId))
            .all(txn)
            .await?;
        for a in rows {
            let key = (a.rule_id.into(), a.device_id.into());
            if wanted.contains(&key) {
                out.insert(key, a);
            }
        }
    }
    Ok(out)
}

/// Applies a pair's outcomes, in order, to its alert (`open`, when there is one). Pushes each
/// change made. Only the messages that are stored are written.
pub(super) async fn apply(
    txn: &DatabaseTransaction,
    subject: Subject<'_>,
    mut open: Option<alert::Model>,
    outcomes: Vec<Outcome>,
    now: DateTime<Utc>,
    changes: &mut Vec<(Change, alert::Model)>,
) -> Result<(), DbErr> {
    let judge = subject.judge;
    let mut repeats: Option<Repeats> = None;
    // An alert these outcomes open: stored once, with its repeats folded in, so a client sees
    // one `created` event for it rather than `created` and `updated`.
    let mut fresh: Option<(alert::Model, Observed)> = None;
    for outcome in outcomes {
        match outcome {
            Outcome::Nothing => {}
            Outcome::Fire { value, observed } => {
                if let Some((a, seen)) = &mut fresh {
                    a.count += 1;
                    a.value = value;
                    *seen = observed;
                } else if open.is_some() {
                    let n = repeats.as_ref().map_or(0, |r| r.0);
                    repeats = Some((n + 1, value, observed));
                } else {
                    fresh = Some((opened(subject, value, now), observed));
                }
            }
            Outcome::Clear if subject.rule.auto_resolve => {
                let current = match (fresh.take(), open.take()) {
                    (Some(f), _) => Some(store_fresh(txn, judge, f, changes).await?),
                    (None, Some(a)) => Some(flush_repeats(txn, judge, a, repeats.take(), now, changes).await?),
                    (None, None) => None,
                };
                if let Some(a) = current
                    && let Some(resolved) = transition(txn, a.id.into(), AlertStatus::Resolved, None, now).await?
                {
                    changes.push((Change::Resolved, resolved));
                }
            }
            Outcome::Clear => {}
        }
    }
    if let Some(f) = fresh {
        store_fresh(txn, judge, f, changes).await?;
    }
    if let Some(a) = open {
        flush_repeats(txn, judge, a, repeats, now, changes).await?;
    }
    Ok(())
}

/// Firings of an open alert folded into one update: how many, and the last one's value and
/// what it was found to be.
type Repeats = (i32, f64, Observed);

/// An alert the subject's rule opens now (its message is written when it is stored).
fn opened(subject: Subject<'_>, value: f64, now: DateTime<Utc>) -> alert::Model {
    let rule = subject.rule;
    alert::Model {
        id: Uuid::now_v7(),
        grower_id: rule.grower_id,
        device_id: subject.device_id.into(),
        rule_id: rule.id,
        metric: rule.metric.clone(),
        severity: rule.severity,
        status: AlertStatus::Active,
        message: String::new(),
        value,
        count: 1,
        created_at: now,
        last_seen_at: now,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        updated_at: now,
    }
}

/// Inserts an alert opened by this evaluation, with the message of its last firing reading.
async fn store_fresh(
    txn: &DatabaseTransaction,
    judge: &engine::Rule,
    (mut a, observed): (alert::Model, Observed),
    changes: &mut Vec<(Change, alert::Model)>,
) -> Result<alert::Model, DbErr> {
    a.message = engine::message(judge, a.value, observed);
    alert::Entity::insert(a.clone().into_active_model()).exec_without_returning(txn).await?;
    changes.push((Change::Created, a.clone()));
    Ok(a)
}

/// Writes an open alert's repeats in one update (value, message, count, last seen).
async fn flush_repeats(
    txn: &DatabaseTransaction,
    judge: &engine::Rule,
    mut a: alert::Model,
    repeats: Option<Repeats>,
    now: DateTime<Utc>,
    changes: &mut Vec<(Change, alert::Model)>,
) -> Result<alert::Model, DbErr> {
    let Some((n, value, observed)) = repeats else { return Ok(a) };
    let message = engine::message(judge, value, observed);
    let updated = alert::Entity::update_many()
        .col_expr(alert::Column::Value, Expr::value(value))
        .col_expr(alert::Column::Message, Expr::value(message.clone()))
        .col_expr(alert::Column::Count, Expr::col(alert::Column::Count).add(n))
        .col_expr(alert::Column::LastSeenAt, Expr::value(now))
        .col_expr(alert::Column::UpdatedAt, Expr::value(now))
        .filter(alert::Column::Id.eq(a.id))
        .filter(alert::Column::Status.ne(AlertStatus::Resolved))
        .exec(txn)
        .await?;
    // Resolved by a person meanwhile: their word stands.
    if updated.rows_affected == 1 {
        a.value = value;
        a.message = message;
        a.count += n;
        a.last_seen_at = now;
        a.updated_at = now;
        changes.push((Change::Updated, a.clone()));
    }
    Ok(a)
}
