//! `deliver_webhook`: one event POSTed, signed, to a grower's webhook; retried with backoff
//! until it answers 2xx.

use std::time::Duration;

use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::record_delivery;
use crate::{
    alerts::{
        entity::{Channel, DeliveryStatus, webhook},
        webhooks::open_secret,
    },
    jobs::{BackgroundJob, Run},
    state::AppState,
};

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

    async fn run(&self, state: &AppState, run: Run) -> anyhow::Result<()> {
        let Some(hook) = webhook::Entity::find_by_id(self.grower_id).one(&state.db).await? else { return Ok(()) };
        if !hook.enabled {
            return Ok(());
        }
        let secret = open_secret(state, &hook)?;
        let result = state.alerts.webhooks.post(&hook.url, &secret, self.event_id, &self.body, state.clock.now()).await;
        let (status, why) = match &result {
            Ok(()) => (DeliveryStatus::Sent, None),
            Err(why) => (DeliveryStatus::Failed, Some(why.as_str())),
        };
        record_delivery(state, run.attempt, Some(self.alert_id), Channel::Webhook, &hook.url, status, why).await;
        result.map_err(|why| anyhow::anyhow!(why))
    }
}
