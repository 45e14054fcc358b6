//! `send_push`: one alert to one registered token through FCM. A token FCM says will never
//! work again is deleted; a refused message is dead-lettered; anything else is retried.

use std::time::Duration;

use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::record_delivery;
use crate::{
    alerts::{
        entity::{Channel, DeliveryStatus, alert, push_token},
        fcm::{FcmError, Message},
    },
    jobs::{BackgroundJob, Permanent, Run},
    state::AppState,
};

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

    async fn run(&self, state: &AppState, run: Run) -> anyhow::Result<()> {
        let target = format!("push_token:{}", self.token_id);
        let Some(fcm) = &state.alerts.fcm else {
            let why = Some("FCM is not configured");
            record_delivery(
                state,
                run.attempt,
                Some(self.alert_id),
                Channel::Push,
                &target,
                DeliveryStatus::Skipped,
                why,
            )
            .await;
            return Ok(());
        };
        // A token unregistered or an alert deleted since: nothing to send.
        let Some(token) = push_token::Entity::find_by_id(self.token_id).one(&state.db).await? else { return Ok(()) };
        let Some(a) = alert::Entity::find_by_id(self.alert_id).one(&state.db).await? else { return Ok(()) };
        let (status, why, result) = match fcm.send(&token.token, &Message::for_alert(&a)).await {
            Ok(name) => {
                tracing::debug!(fcm_message = %name, "push sent");
                (DeliveryStatus::Sent, None, Ok(()))
            }
            Err(FcmError::Unregistered(why)) => {
                // FCM says this token will never work again: forget it.
                push_token::Entity::delete_by_id(token.id).exec(&state.db).await?;
                (DeliveryStatus::Unregistered, Some(why), Ok(()))
            }
            Err(FcmError::Rejected(why)) => (DeliveryStatus::Failed, Some(why.clone()), Err(Permanent(why).into())),
            Err(FcmError::Transient(why)) => (DeliveryStatus::Failed, Some(why.clone()), Err(anyhow::anyhow!(why))),
        };
        record_delivery(state, run.attempt, Some(a.id), Channel::Push, &target, status, why.as_deref()).await;
        result
    }
}
