//! Turning alert changes into delivery jobs, and the jobs themselves.
//!
//! Every change gets a realtime event on `/alerts/{growerId}`. A *new* alert at or above
//! `ALERT_PUSH_MIN_SEVERITY` (critical by default) is pushed to each push token of the
//! grower's members, one job per token; at or above `ALERT_EMAIL_MIN_SEVERITY` it is mailed to
//! each member. Created, acknowledged and resolved alerts go to the grower's webhook, when it
//! has one (repeats of an open alert do not). The jobs are enqueued in the transaction that
//! made the change, so a change and its notifications commit together.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Query,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    AlertOut, Change,
    entity::{Channel, DeliveryStatus, Severity, alert, delivery, push_token, webhook},
    fcm::FcmError,
};
use crate::{
    greenhouse::entity::member,
    jobs::{self, BackgroundJob, Permanent},
    mail::SendEmail,
    state::AppState,
    users::entity::user,
};

/// Records one delivery attempt (best effort: a failure to record is logged, and never turns a
/// delivered notification into a retried one).
pub async fn record_delivery(
    state: &AppState,
    attempt: i32,
    alert_id: Option<Uuid>,
    channel: Channel,
    target: &str,
    status: DeliveryStatus,
    error: Option<&str>,
) {
    let row = delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        alert_id: Set(alert_id),
        channel: Set(channel),
        target: Set(target.chars().take(512).collect()),
        status: Set(status),
        error: Set(error.map(|e| e.chars().take(2000).collect())),
        attempt: Set(attempt),
        created_at: Set(state.clock.now()),
    };
    if let Err(e) = delivery::Entity::insert(row).exec_without_returning(&state.db).await {
        tracing::warn!(error = %e, channel = channel.as_str(), "could not record a notification delivery");
    }
    state
        .metrics
        .notifications
        .get_or_create(&crate::metrics::NotificationLabels { channel: channel.as_str(), status: status.as_str() })
        .inc();
}

fn at_least(severity: Severity, min: Option<Severity>) -> bool {
    min.is_some_and(|m| severity >= m)
}

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
    jobs::enqueue(
        txn,
        &PublishAlertEvents { grower_id, events, accepted_at_ms: accepted_at.map(|t| t.timestamp_millis()) },
    )
    .await?;
    let members = || {
        Query::select()
            .column(member::Column::UserId)
            .from(member::Entity)
            .and_where(member::Column::GrowerId.eq(grower_id))
            .to_owned()
    };
    let created: Vec<&alert::Model> = changes.iter().filter(|(c, _)| *c == Change::Created).map(|(_, a)| a).collect();
    let push: Vec<&&alert::Model> =
        created.iter().filter(|a| at_least(a.severity, state.config.alerts.push_min_severity)).collect();
    // Members who can still sign in: not deleted, not disabled.
    let recipients = || {
        Query::select()
            .column(user::Column::Id)
            .from(user::Entity)
            .and_where(user::Column::Id.in_subquery(members()))
            .and_where(user::Column::DeletedAt.is_null())
            .and_where(user::Column::DisabledAt.is_null())
            .to_owned()
    };
    if !push.is_empty() && state.alerts.fcm.is_some() {
        let tokens: Vec<Uuid> = push_token::Entity::find()
            .select_only()
            .column(push_token::Column::Id)
            .filter(push_token::Column::UserId.in_subquery(recipients()))
            .into_tuple()
            .all(txn)
            .await?;
        for a in &push {
            for token_id in &tokens {
                jobs::enqueue(txn, &SendPush { alert_id: a.id, token_id: *token_id }).await?;
            }
        }
    }
    let mail: Vec<&&alert::Model> =
        created.iter().filter(|a| at_least(a.severity, state.config.alerts.email_min_severity)).collect();
    if !mail.is_empty() {
        let emails: Vec<String> = user::Entity::find()
            .select_only()
            .column(user::Column::Email)
            .filter(user::Column::Id.in_subquery(recipients()))
            .into_tuple()
            .all(txn)
            .await?;
        for a in &mail {
            for to in &emails {
                let subject = format!("[{}] {} alert on {}", a.severity.as_str().to_uppercase(), a.metric, a.device_id);
                let body = format!(
                    "{}\n\nAlert {} (rule {}), device {}, at {}.\nOpen it: {}/alerts/{}\n",
                    a.message,
                    a.id,
                    a.rule_id,
                    a.device_id,
                    a.created_at.to_rfc3339(),
                    state.config.auth.public_url,
                    a.id
                );
                jobs::enqueue(txn, &SendEmail { to: to.clone(), subject, body, alert_id: Some(a.id) }).await?;
            }
        }
    }
    let hooked = webhook::Entity::find_by_id(grower_id).filter(webhook::Column::Enabled.eq(true)).one(txn).await?;
    if hooked.is_some() {
        for (change, a) in changes.iter().filter(|(c, _)| *c != Change::Updated) {
            let event_id = Uuid::now_v7();
            let body = serde_json::json!({
                "id": event_id,
                "type": format!("alert.{}", change.as_str()),
                "createdAt": state.clock.now(),
                "data": {"alert": AlertOut::from(a)},
            });
            jobs::enqueue(txn, &DeliverWebhook { grower_id, alert_id: a.id, event_id, body: body.to_string() }).await?;
        }
    }
    Ok(())
}

/// One alert change, as published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEvent {
    pub change: Change,
    pub alert: AlertOut,
}

/// Publishes alert changes on `/alerts/{growerId}`, in the order they were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishAlertEvents {
    pub grower_id: Uuid,
    pub events: Vec<AlertEvent>,
    /// When the telemetry batch behind these changes was accepted (ms since the epoch).
    #[serde(default)]
    pub accepted_at_ms: Option<i64>,
}

impl BackgroundJob for PublishAlertEvents {
    const NAME: &'static str = "publish_alert_events";
    const PRIORITY: i16 = 20;
    const TIMEOUT: Duration = Duration::from_secs(10);

    async fn run(&self, state: &AppState, run: jobs::Run) -> anyhow::Result<()> {
        let path = format!("/alerts/{}", self.grower_id);
        for e in &self.events {
            state.realtime.publish(&path, None, &serde_json::json!({"change": e.change, "alert": e.alert}));
        }
        if let Some(ms) = self.accepted_at_ms {
            let elapsed = (Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0;
            state.metrics.alert_event_latency.observe(elapsed);
        }
        for e in &self.events {
            record_delivery(state, run.attempt, Some(e.alert.id), Channel::Realtime, &path, DeliveryStatus::Sent, None)
                .await;
        }
        Ok(())
    }
}

/// Pushes one alert to one registered token through FCM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendPush {
    pub alert_id: Uuid,
    pub token_id: Uuid,
}

impl BackgroundJob for SendPush {
    const NAME: &'static str = "send_push";
    const PRIORITY: i16 = 15;
    const MAX_ATTEMPTS: i32 = 6;
    const TIMEOUT: Duration = Duration::from_secs(30);

    async fn run(&self, state: &AppState, run: jobs::Run) -> anyhow::Result<()> {
        let target = format!("push_token:{}", self.token_id);
        let Some(fcm) = &state.alerts.fcm else {
            record_delivery(
                state,
                run.attempt,
                Some(self.alert_id),
                Channel::Push,
                &target,
                DeliveryStatus::Skipped,
                Some("FCM is not configured"),
            )
            .await;
            return Ok(());
        };
        // A token unregistered or an alert deleted since: nothing to send.
        let Some(token) = push_token::Entity::find_by_id(self.token_id).one(&state.db).await? else { return Ok(()) };
        let Some(a) = alert::Entity::find_by_id(self.alert_id).one(&state.db).await? else { return Ok(()) };
        let message = super::fcm::Message::for_alert(&a);
        match fcm.send(&token.token, &message).await {
            Ok(name) => {
                tracing::debug!(fcm_message = %name, "push sent");
                record_delivery(state, run.attempt, Some(a.id), Channel::Push, &target, DeliveryStatus::Sent, None)
                    .await;
                Ok(())
            }
            Err(FcmError::Unregistered(why)) => {
                // FCM says this token will never work again: forget it.
                push_token::Entity::delete_by_id(token.id).exec(&state.db).await?;
                record_delivery(
                    state,
                    run.attempt,
                    Some(a.id),
                    Channel::Push,
                    &target,
                    DeliveryStatus::Unregistered,
                    Some(&why),
                )
                .await;
                Ok(())
            }
            Err(FcmError::Rejected(why)) => {
                record_delivery(
                    state,
                    run.attempt,
                    Some(a.id),
                    Channel::Push,
                    &target,
                    DeliveryStatus::Failed,
                    Some(&why),
                )
                .await;
                Err(Permanent(why).into())
            }
            Err(FcmError::Transient(why)) => {
                record_delivery(
                    state,
                    run.attempt,
                    Some(a.id),
                    Channel::Push,
                    &target,
                    DeliveryStatus::Failed,
                    Some(&why),
                )
                .await;
                Err(anyhow::anyhow!(why))
            }
        }
    }
}

/// Posts one event to a grower's webhook, signed (`Mash-Signature: t=…,v1=…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverWebhook {
    pub grower_id: Uuid,
    pub alert_id: Uuid,
    /// Also the `Mash-Event-Id` header: receivers drop repeats by it.
    pub event_id: Uuid,
    /// The exact body, fixed at enqueue time so every retry sends the same bytes.
    pub body: String,
}

impl BackgroundJob for DeliverWebhook {
    const NAME: &'static str = "deliver_webhook";
    const MAX_ATTEMPTS: i32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(30);

    async fn run(&self, state: &AppState, run: jobs::Run) -> anyhow::Result<()> {
        let Some(hook) = webhook::Entity::find_by_id(self.grower_id).one(&state.db).await? else { return Ok(()) };
        if !hook.enabled {
            return Ok(());
        }
        let secret = super::webhooks::open_secret(state, &hook)?;
        let result = state.alerts.webhooks.post(&hook.url, &secret, self.event_id, &self.body, state.clock.now()).await;
        match result {
            Ok(()) => {
                record_delivery(
                    state,
                    run.attempt,
                    Some(self.alert_id),
                    Channel::Webhook,
                    &hook.url,
                    DeliveryStatus::Sent,
                    None,
                )
                .await;
                Ok(())
            }
            Err(why) => {
                record_delivery(
                    state,
                    run.attempt,
                    Some(self.alert_id),
                    Channel::Webhook,
                    &hook.url,
                    DeliveryStatus::Failed,
                    Some(&why),
                )
                .await;
                Err(anyhow::anyhow!(why))
            }
        }
    }
}
