//! The broker's questions, answered: may this client connect, may it publish or subscribe to
//! this topic, is it a superuser.
//!
//! - A device connects with its id as username and client id, and its device token as
//!   password. It may publish only to its own telemetry topic and subscribe only to its own
//!   desired topic, while it exists.
//! - The server's own identity (from `MQTT_URL`) may do anything; it is the only superuser.
//!   Without a configured password its username never logs in through the hook.

use uuid::Uuid;

use super::{
    error::HookError,
    topics::topic_device,
    types::{MqttAclIn, MqttAuthIn, MqttSuperuserIn},
};
use crate::{
    greenhouse::{access::find_live_device, device_auth},
    state::AppState,
};

/// Whether the client may connect; `Ok(true)` for the server itself (a superuser).
pub async fn authenticate(state: &AppState, input: &MqttAuthIn) -> Result<bool, HookError> {
    if is_server(state, &input.username, Some(&input.password)) {
        return Ok(true);
    }
    let device_id = device_of(&input.username)?;
    // A device connects under its own id as client id: otherwise a valid device could take
    // over another client's persistent session (the server's included) and its messages.
    if input.clientid.as_deref().map(str::trim) != Some(input.username.trim()) {
        return Err(HookError::Denied("a device's MQTT client id must be its device id"));
    }
    match device_auth::verify(&state.db, &input.password).await? {
        Some(auth) if auth.device_id.0 == device_id => {
            state.greenhouse.seen(&state.db, &[device_id]).await;
            Ok(false)
        }
        _ => Err(HookError::Denied("invalid device credentials")),
    }
}

/// Whether the client may publish or subscribe to the topic; `Ok(true)` for the server.
pub async fn authorize(state: &AppState, input: &MqttAclIn) -> Result<bool, HookError> {
    if is_server(state, &input.username, None) {
        return Ok(true);
    }
    let acc = parse_acc(&input.acc).ok_or(HookError::BadAccess)?;
    let device_id = device_of(&input.username)?;
    let allowed = match acc {
        Access::Publish => topic_device(&input.topic, "telemetry") == Some(device_id),
        Access::Subscribe => topic_device(&input.topic, "desired") == Some(device_id),
        Access::Both => false,
    };
    if !allowed {
        return Err(HookError::Denied(
            "a device may publish only its own telemetry and read only its own desired state",
        ));
    }
    if find_live_device(&state.db, device_id).await?.is_none() {
        return Err(HookError::Denied("no such device"));
    }
    Ok(false)
}

/// Only the server's own identity is a superuser.
pub fn superuser(state: &AppState, input: &MqttSuperuserIn) -> Result<bool, HookError> {
    if is_server(state, &input.username, None) { Ok(true) } else { Err(HookError::Denied("not a superuser")) }
}

fn device_of(username: &str) -> Result<Uuid, HookError> {
    Uuid::parse_str(username.trim()).map_err(|_| HookError::Denied("username must be a device id"))
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
            None => false,
            Some(expected) => crate::util::constant_time_eq(p.as_bytes(), expected.as_bytes()),
        },
    }
}

enum Access {
    Publish,
    Subscribe,
    Both,
}

/// `acc`: 1 read, 2 write (publish), 3 read and write, 4 subscribe (mosquitto-go-auth), or
/// `"publish"`/`"subscribe"` (EMQX's `${action}`).
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
