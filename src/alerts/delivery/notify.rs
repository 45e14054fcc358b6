//! Which deliveries an alert change gets, enqueued in the transaction that made the change.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Query, SelectStatement},
};
use uuid::Uuid;

use super::{AlertEvent, DeliverWebhook, PublishAlertEvents, SendPush};
use crate::{
    alerts::{
        AlertOut, Change,
        entity::{Severity, alert, push_token, webhook},
    },
    greenhouse::entity::member,
    jobs,
    mail::SendEmail,
    state::AppState,
    users::entity::user,
};

/// Enqueues the deliveries of `changes` (all of one grower) inside `txn`.
pub async fn notify<C: ConnectionTrait>(
    txn: &C,
    state: &AppState,
    grower_id: Uuid,
    changes: &[(Change, alert::Model)],
    accepted_at: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    if changes.is_empty() {
        return Ok(());
    }
    for (change, _) in changes {
        state.metrics.alert_changes.get_or_create(&crate::metrics::ChangeLabels { change: change.as_str() }).inc();
    }
    let events = changes.iter().map(|(c, a)| AlertEvent { change: *c, alert: AlertOut::from(a) }).collect();
    let accepted_at_ms = accepted_at.map(|t| t.timestamp_millis());
    jobs::enqueue(txn, &PublishAlertEvents { grower_id, events, accepted_at_ms }).await?;
    let created: Vec<&alert::Model> = changes.iter().filter(|(c, _)| *c == Change::Created).map(|(_, a)| a).collect();
    let at_least = |min: Option<Severity>| -> Vec<&alert::Model> {
        created.iter().copied().filter(|a| min.is_some_and(|m| a.severity >= m)).collect()
    };
    let push = at_least(state.config.alerts.push_min_severity);
    if !push.is_empty() && state.alerts.fcm.is_some() {
        let tokens: Vec<Uuid> = push_token::Entity::find()
            .select_only()
            .column(push_token::Column::Id)
            .filter(push_token::Column::UserId.in_subquery(recipients(grower_id)))
            .into_tuple()
            .all(txn)
            .await?;
        for a in &push {
            for token_id in &tokens {
                jobs::enqueue(txn, &SendPush { alert_id: a.id, token_id: *token_id }).await?;
            }
        }
    }
    let mail = at_least(state.config.alerts.email_min_severity);
    if !mail.is_empty() {
        let emails: Vec<String> = user::Entity::find()
            .select_only()
            .column(user::Column::Email)
            .filter(user::Column::Id.in_subquery(recipients(grower_id)))
            .into_tuple()
            .all(txn)
            .await?;
        for a in &mail {
            for to in &emails {
                jobs::enqueue(txn, &alert_mail(a, to, &state.config.auth.public_url)).await?;
            }
        }
    }
    let hooked = webhook::Entity::find_by_id(grower_id).filter(webhook::Column::Enabled.eq(true)).one(txn).await?;
    if hooked.is_some() {
        // Repeats of an open alert are not posted.
        for (change, a) in changes.iter().filter(|(c, _)| *c != Change::Updated) {
            jobs::enqueue(txn, &webhook_event(grower_id, *change, a, state.clock.now())).await?;
        }
    }
    Ok(())
}

/// The grower's members who can still sign in (not deleted, not disabled).
fn recipients(grower_id: Uuid) -> SelectStatement {
    let members = Query::select()
        .column(member::Column::UserId)
        .from(member::Entity)
        .and_where(member::Column::GrowerId.eq(grower_id))
        .to_owned();
    Query::select()
        .column(user::Column::Id)
        .from(user::Entity)
        .and_where(user::Column::Id.in_subquery(members))
        .and_where(user::Column::DeletedAt.is_null())
        .and_where(user::Column::DisabledAt.is_null())
        .to_owned()
}

/// The mail about a new alert to one member.
fn alert_mail(a: &alert::Model, to: &str, public_url: &str) -> SendEmail {
    let subject = format!("[{}] {} alert on {}", a.severity.as_str().to_uppercase(), a.metric, a.device_id);
    let body = format!(
        "{}\n\nAlert {} (rule {}), device {}, at {}.\nOpen it: {}/alerts/{}\n",
        a.message,
        a.id,
        a.rule_id,
        a.device_id,
        a.created_at.to_rfc3339(),
        public_url,
        a.id
    );
    SendEmail { to: to.to_string(), subject, body, alert_id: Some(a.id) }
}

/// The webhook delivery of one change: the body is fixed now, so every retry sends the same bytes.
fn webhook_event(grower_id: Uuid, change: Change, a: &alert::Model, now: DateTime<Utc>) -> DeliverWebhook {
    let event_id = Uuid::now_v7();
    let body = serde_json::json!({
        "id": event_id,
        "type": format!("alert.{}", change.as_str()),
        "createdAt": now,
        "data": {"alert": AlertOut::from(a)},
    });
    DeliverWebhook { grower_id, alert_id: a.id, event_id, body: body.to_string() }
}
