//! Desired state to devices over MQTT: retained on `mash/devices/{id}/desired`, so a device
//! that connects later still gets its latest desired state. Publishing never waits: when the
//! connection is backed up the message is dropped and logged (the device can always
//! `GET /devices/me/desired`).

use rumqttc::{AsyncClient, QoS};
use uuid::Uuid;

use super::topics::desired_topic;
use crate::state::AppState;

/// Publishes to devices through the subscriber's connection.
pub struct Publisher {
    pub(super) client: AsyncClient,
}

impl Publisher {
    pub async fn desired(&self, device_id: Uuid, desired: &serde_json::Value, version: i64) {
        let payload = serde_json::json!({ "desired": desired, "desiredVersion": version }).to_string();
        if let Err(e) = self.client.try_publish(desired_topic(device_id), QoS::AtLeastOnce, true, payload) {
            tracing::warn!(%device_id, error = %e, "could not publish desired state over MQTT");
        }
    }
}

/// Tells a device about its new desired state, when the MQTT subscriber runs.
pub async fn desired_changed(state: &AppState, device_id: Uuid, desired: &serde_json::Value, version: i64) {
    if let Some(publisher) = state.telemetry.mqtt.get() {
        publisher.desired(device_id, desired, version).await;
    }
}
