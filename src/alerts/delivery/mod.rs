//! Turning alert changes into delivery jobs ([`notify`]), and the jobs themselves.
//!
//! Every change gets a realtime event on `/alerts/{growerId}` ([`publish`]). A *new* alert at
//! or above `ALERT_PUSH_MIN_SEVERITY` (critical by default) is pushed to each push token of the
//! grower's members, one job per token ([`push`]); at or above `ALERT_EMAIL_MIN_SEVERITY` it is
//! mailed to each member (`crate::mail`). Created, acknowledged and resolved alerts go to the
//! grower's webhook, when it has one ([`webhook`]; repeats of an open alert do not). The jobs
//! are enqueued in the transaction that made the change, so a change and its notifications
//! commit together. Every attempt is recorded ([`record_delivery`]).

use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

mod notify;
mod publish;
mod push;
mod webhook;

pub use notify::notify;
pub use publish::{AlertEvent, PublishAlertEvents};
pub use push::SendPush;
pub use webhook::DeliverWebhook;

use super::entity::{Channel, DeliveryStatus, delivery};
use crate::state::AppState;

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
