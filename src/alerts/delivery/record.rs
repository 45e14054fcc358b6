//! `notification_deliveries`: one row per delivery attempt, and the `notifications` metric.

use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use crate::{
    alerts::entity::{Channel, DeliveryStatus, delivery},
    state::AppState,
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
