//! `publish_alert_events`: alert changes on `/alerts/{growerId}`, in the order they were made.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::record_delivery;
use crate::{
    alerts::{
        AlertOut, Change,
        entity::{Channel, DeliveryStatus},
    },
    jobs::{BackgroundJob, Run},
    state::AppState,
};

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

    async fn run(&self, state: &AppState, run: Run) -> anyhow::Result<()> {
        let path = format!("/alerts/{}", self.grower_id);
        for e in &self.events {
            state.realtime.publish(&path, None, &serde_json::json!({"change": e.change, "alert": e.alert}));
        }
        if let Some(ms) = self.accepted_at_ms {
            let elapsed = (Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0;
            state.metrics.alert_event_latency.observe(elapsed);
        }
        for e in &self.events {
            let alert_id = Some(e.alert.id);
            record_delivery(state, run.attempt, alert_id, Channel::Realtime, &path, DeliveryStatus::Sent, None).await;
        }
        Ok(())
    }
}
