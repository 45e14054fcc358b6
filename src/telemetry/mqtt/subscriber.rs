//! The subscriber that feeds `mash/devices/+/telemetry` into the same validation and storage
//! path as HTTP.
//!
//! Delivery: the subscriber connects with a stable client id and a persistent session
//! (`clean_session = false`) at QoS 1, and acknowledges a message only after its readings are
//! committed (manual acks). A message that arrives while the server is down or reconnecting is
//! kept by the broker and delivered again; one that was stored but not yet acknowledged when
//! the connection dropped comes again and is counted as duplicates. Nothing the broker
//! delivered is lost, and nothing is stored twice. A malformed message is counted, logged and
//! acknowledged (so it is not redelivered forever), never fatal.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::task::JoinHandle;

use super::{publisher::Publisher, topics::topic_device};
use crate::{
    config::MqttConfig,
    greenhouse::access::find_live_device,
    http::AppError,
    state::AppState,
    telemetry::{
        TelemetryError,
        batch::{self, Window},
        ingest::{ingest, rejected},
        types::ItemIn,
    },
};

/// Largest MQTT message accepted (a full 5000-reading batch fits).
const MAX_PACKET: usize = 4 * 1024 * 1024;

fn options(cfg: &MqttConfig) -> MqttOptions {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(MAX_PACKET, 256 * 1024);
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), cfg.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default());
    }
    if cfg.tls {
        opts.set_transport(Transport::tls_with_default_config());
    }
    opts
}

/// Starts the subscriber when `MQTT_URL` is set.
pub fn spawn(state: &AppState) -> Option<JoinHandle<()>> {
    let cfg = state.config.telemetry.mqtt.clone()?;
    let (client, mut eventloop) = AsyncClient::new(options(&cfg), 64);
    let _ = state.telemetry.mqtt.set(Publisher { client: client.clone() });
    let filter = match &cfg.shared_group {
        Some(group) => format!("$share/{group}/mash/devices/+/telemetry"),
        None => "mash/devices/+/telemetry".to_string(),
    };
    let state = state.clone();
    Some(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(250);
                    tracing::info!(host = %cfg.host, port = cfg.port, session_present = ack.session_present, "MQTT connected");
                    // Subscribing again on a kept session is harmless, and covers a broker that lost it.
                    // `try_*`: this task is the only one polling the event loop, so it must never
                    // wait on the request channel (a full channel would wait forever).
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "MQTT subscribe failed");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    handle(&state, &publish.topic, &publish.payload).await;
                    if let Err(e) = client.try_ack(&publish) {
                        tracing::warn!(error = %e, "MQTT ack failed; the broker will deliver the message again");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }))
}

/// Stores one message, retrying while the database is unavailable (the message is only
/// acknowledged afterwards). Bad messages are counted and logged.
async fn handle(state: &AppState, topic: &str, payload: &[u8]) {
    let reject = |reason: &'static str, why: &str| {
        rejected(state, "mqtt", reason);
        tracing::warn!(%topic, reason, why, "MQTT telemetry message refused");
    };
    let Some(device_id) = topic_device(topic, "telemetry") else {
        return reject("topic", "topic is not mash/devices/{deviceId}/telemetry");
    };
    let items = match parse_payload(payload) {
        Ok(items) => items,
        Err(e) => return reject("invalid", &e.to_string()),
    };
    let window = Window::of(&state.config.telemetry);
    let readings = match batch::validate(items, Some(device_id), chrono::Utc::now(), window) {
        Ok(r) => r,
        Err(e) => return reject("invalid", &e.to_string()),
    };
    if readings.iter().any(|r| r.device_id != device_id) {
        return reject("forbidden", "a message may only carry readings of its topic's device");
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let outcome = match find_live_device(&state.db, device_id).await {
            Ok(None) => return reject("unknown_device", "no such device"),
            Ok(Some(_)) => ingest(state, "mqtt", readings.clone()).await,
            Err(e) => Err(e),
        };
        // Classified as over HTTP: what would be a 5xx (the database down) is retried.
        match outcome.map_err(AppError::from) {
            Ok(out) => {
                tracing::debug!(%device_id, accepted = out.accepted, duplicates = out.duplicates, "MQTT telemetry stored");
                return;
            }
            Err(e) if e.status().is_server_error() => {
                tracing::warn!(%device_id, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot store MQTT telemetry yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return reject("invalid", &e.to_string()),
        }
    }
}

/// A list of readings, or one reading.
fn parse_payload(payload: &[u8]) -> Result<Vec<ItemIn>, TelemetryError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        crate::http::extract::parse_json::<ItemIn>(payload).map(|i| vec![i]).map_err(TelemetryError::bad_input)
    } else {
        batch::parse_items(payload)
    }
}
