//! MQTT: the subscriber that feeds `mash/devices/+/telemetry` into the same validation and
//! storage path as HTTP, the desired-state publisher, and the broker's HTTP auth/ACL hooks.
//!
//! Delivery: the subscriber connects with a stable client id and a persistent session
//! (`clean_session = false`) at QoS 1, and acknowledges a message only after its readings are
//! committed (manual acks). A message that arrives while the server is down or reconnecting is
//! kept by the broker and delivered again; one that was stored but not yet acknowledged when
//! the connection dropped comes again and is counted as duplicates. Nothing the broker
//! delivered is lost, and nothing is stored twice. A malformed message is counted, logged and
//! acknowledged (so it is not redelivered forever), never fatal.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, header},
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::batch::{self, ItemIn};
use crate::{
    config::MqttConfig,
    greenhouse::{access::find_live_device, device_auth},
    http::{AppError, Json},
    state::AppState,
};

/// Largest MQTT message accepted (a full 5000-reading batch fits).
const MAX_PACKET: usize = 4 * 1024 * 1024;

pub fn telemetry_topic(device_id: Uuid) -> String {
    format!("mash/devices/{device_id}/telemetry")
}

pub fn desired_topic(device_id: Uuid) -> String {
    format!("mash/devices/{device_id}/desired")
}

/// The device id of `mash/devices/{id}/<leaf>`.
fn topic_device(topic: &str, leaf: &str) -> Option<Uuid> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("mash"), Some("devices"), Some(id), Some(l), None) if l == leaf => Uuid::parse_str(id).ok(),
        _ => None,
    }
}

/// Publishes to devices through the subscriber's connection.
pub struct Publisher {
    client: AsyncClient,
}

impl Publisher {
    /// Retained, so a device that connects later still gets its latest desired state. Never
    /// waits: when the connection is backed up the message is dropped and logged (the device
    /// can always `GET /devices/me/desired`).
    pub async fn desired(&self, device_id: Uuid, desired: &serde_json::Value, version: i64) {
        let payload = serde_json::json!({ "desired": desired, "desiredVersion": version }).to_string();
        if let Err(e) = self.client.try_publish(desired_topic(device_id), QoS::AtLeastOnce, true, payload) {
            tracing::warn!(%device_id, error = %e, "could not publish desired state over MQTT");
        }
    }
}

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
        super::rejected(state, "mqtt", reason);
        tracing::warn!(%topic, reason, why, "MQTT telemetry message refused");
    };
    let Some(device_id) = topic_device(topic, "telemetry") else {
        return reject("topic", "topic is not mash/devices/{deviceId}/telemetry");
    };
    let items = match parse_payload(payload) {
        Ok(items) => items,
        Err(e) => return reject("invalid", &e.to_string()),
    };
    let window =
        batch::Window { backfill: state.config.telemetry.backfill, max_future: state.config.telemetry.max_future };
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
            Ok(Some(_)) => super::ingest(state, "mqtt", readings.clone()).await,
            Err(e) => Err(AppError::from(e)),
        };
        match outcome {
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
fn parse_payload(payload: &[u8]) -> Result<Vec<ItemIn>, AppError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        crate::http::extract::parse_json::<ItemIn>(payload).map(|i| vec![i])
    } else {
        crate::http::extract::parse_json::<Vec<ItemIn>>(payload).map_err(batch::name_items)
    }
}

// ---------------------------------------------------------------------------------------------
// Broker hooks
// ---------------------------------------------------------------------------------------------

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mqtt_auth)).routes(routes!(mqtt_acl)).routes(routes!(mqtt_superuser))
}

/// `POST /mqtt/auth` input (JSON or form): EMQX HTTP authn and mosquitto-go-auth send these.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MqttAuthIn {
    #[serde(default)]
    pub clientid: Option<String>,
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// `POST /mqtt/acl` input. `acc`: 1 read, 2 write (publish), 3 read and write, 4 subscribe —
/// or `"publish"`/`"subscribe"` (EMQX's `${action}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MqttAclIn {
    #[serde(default)]
    pub clientid: Option<String>,
    pub username: String,
    pub topic: String,
    #[schema(value_type = Object)]
    pub acc: serde_json::Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MqttSuperuserIn {
    pub username: String,
}

/// An allowed hook call, in the shape both EMQX (`result`, `is_superuser`) and
/// mosquitto-go-auth (`ok`) read. A refusal is a 403 in the usual error shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MqttAllow {
    pub result: &'static str,
    pub is_superuser: bool,
    pub ok: bool,
}

fn allow(is_superuser: bool) -> Json<MqttAllow> {
    Json(MqttAllow { result: "allow", is_superuser, ok: true })
}

fn deny(why: &str) -> AppError {
    AppError::Forbidden(why.to_string())
}

/// The hooks are guarded by `MQTT_AUTH_SECRET`, sent as `X-Mqtt-Secret` (or
/// `Authorization: Bearer <secret>`); without the setting they do not exist (404).
fn check_secret(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(secret) = &state.config.telemetry.mqtt_auth_secret else {
        return Err(AppError::NotFound("MQTT hooks are disabled (set MQTT_AUTH_SECRET)".into()));
    };
    let given = headers
        .get("x-mqtt-secret")
        .and_then(|v| v.to_str().ok())
        .or_else(|| crate::auth::extract::authorization(headers, "bearer"));
    match given {
        Some(g) if crate::util::constant_time_eq(g.as_bytes(), secret.expose().as_bytes()) => Ok(()),
        _ => Err(AppError::Unauthorized("missing or wrong MQTT hook secret".into())),
    }
}

/// JSON or `application/x-www-form-urlencoded`, as brokers send either.
fn parse_hook<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, AppError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        serde_urlencoded::from_bytes(body).map_err(|e| AppError::bad_request(format!("invalid form body: {e}")))
    } else {
        crate::http::extract::parse_json(body)
    }
}

/// The server's own MQTT identity (from `MQTT_URL`), which may subscribe to every device topic.
fn is_server(state: &AppState, username: &str, password: Option<&str>) -> bool {
    let Some(cfg) = &state.config.telemetry.mqtt else { return false };
    let Some(own) = &cfg.username else { return false };
    if own != username {
        return false;
    }
    match password {
        None => true,
        Some(p) => match cfg.password.as_ref().map(|s| s.expose()).filter(|e| !e.is_empty()) {
            // Without a configured password the server's username never logs in through the hook.
            None => false,
            Some(expected) => crate::util::constant_time_eq(p.as_bytes(), expected.as_bytes()),
        },
    }
}

/// Broker authentication hook: `username` is a device id and `password` its device token
/// (or the server's own credentials from `MQTT_URL`). 200 allows; 403 refuses.
#[utoipa::path(post, path = "/mqtt/auth", tag = "mqtt", request_body = MqttAuthIn,
    responses((status = 200, body = MqttAllow), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn mqtt_auth(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MqttAllow>, AppError> {
    check_secret(&state, &headers)?;
    let input: MqttAuthIn = parse_hook(&headers, &body)?;
    if is_server(&state, &input.username, Some(&input.password)) {
        return Ok(allow(true));
    }
    let device_id = Uuid::parse_str(input.username.trim()).map_err(|_| deny("username must be a device id"))?;
    // A device connects under its own id as client id: otherwise a valid device could take
    // over another client's persistent session (the server's included) and its messages.
    if input.clientid.as_deref().map(str::trim) != Some(input.username.trim()) {
        return Err(deny("a device's MQTT client id must be its device id"));
    }
    match device_auth::verify(&state.db, &input.password).await? {
        Some(auth) if auth.device_id == device_id => {
            state.greenhouse.seen(&state.db, &[device_id]).await;
            Ok(allow(false))
        }
        _ => Err(deny("invalid device credentials")),
    }
}

enum Access {
    Publish,
    Subscribe,
    Both,
}

fn parse_acc(acc: &serde_json::Value) -> Option<Access> {
    let n = acc.as_u64().or_else(|| acc.as_str().and_then(|s| s.parse().ok()));
    match (n, acc.as_str()) {
        (Some(1 | 4), _) => Some(Access::Subscribe),
        (Some(2), _) => Some(Access::Publish),
        (Some(3), _) => Some(Access::Both),
        (_, Some("publish" | "write" | "pub")) => Some(Access::Publish),
        (_, Some("subscribe" | "read" | "sub")) => Some(Access::Subscribe),
        (_, Some("all" | "readwrite")) => Some(Access::Both),
        _ => None,
    }
}

/// Broker ACL hook: a device may publish only to `mash/devices/{itself}/telemetry` and
/// subscribe only to `mash/devices/{itself}/desired`; the server's identity may do anything.
#[utoipa::path(post, path = "/mqtt/acl", tag = "mqtt", request_body = MqttAclIn,
    responses((status = 200, body = MqttAllow), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn mqtt_acl(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<MqttAllow>, AppError> {
    check_secret(&state, &headers)?;
    let input: MqttAclIn = parse_hook(&headers, &body)?;
    if is_server(&state, &input.username, None) {
        return Ok(allow(true));
    }
    let acc = parse_acc(&input.acc)
        .ok_or_else(|| AppError::invalid_field("acc", "must be 1, 2, 3, 4, publish or subscribe"))?;
    let device_id = Uuid::parse_str(input.username.trim()).map_err(|_| deny("username must be a device id"))?;
    let allowed = match acc {
        Access::Publish => topic_device(&input.topic, "telemetry") == Some(device_id),
        Access::Subscribe => topic_device(&input.topic, "desired") == Some(device_id),
        Access::Both => false,
    };
    if !allowed {
        return Err(deny("a device may publish only its own telemetry and read only its own desired state"));
    }
    if find_live_device(&state.db, device_id).await?.is_none() {
        return Err(deny("no such device"));
    }
    Ok(allow(false))
}

/// mosquitto-go-auth's superuser check: only the server's own identity is one.
#[utoipa::path(post, path = "/mqtt/superuser", tag = "mqtt", request_body = MqttSuperuserIn,
    responses((status = 200, body = MqttAllow), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn mqtt_superuser(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MqttAllow>, AppError> {
    check_secret(&state, &headers)?;
    let input: MqttSuperuserIn = parse_hook(&headers, &body)?;
    if is_server(&state, &input.username, None) { Ok(allow(true)) } else { Err(deny("not a superuser")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_device() {
        let id = Uuid::now_v7();
        assert_eq!(topic_device(&telemetry_topic(id), "telemetry"), Some(id));
        assert_eq!(topic_device(&desired_topic(id), "desired"), Some(id));
        assert_eq!(topic_device(&telemetry_topic(id), "desired"), None);
        assert_eq!(topic_device(&format!("mash/devices/{id}/telemetry/x"), "telemetry"), None);
        assert_eq!(topic_device("mash/devices/not-a-uuid/telemetry", "telemetry"), None);
    }
}
