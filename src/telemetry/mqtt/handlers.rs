//! The broker hooks `POST /mqtt/auth`, `/mqtt/acl` and `/mqtt/superuser`. They are guarded by
//! `MQTT_AUTH_SECRET`, sent as `X-Mqtt-Secret` (or `Authorization: Bearer <secret>`); without
//! the setting they do not exist (404). Bodies are JSON or form-encoded, as brokers send either.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use super::{
    hooks,
    types::{MqttAclIn, MqttAllow, MqttAuthIn, MqttSuperuserIn},
};
use crate::{
    http::{AppError, Json},
    state::AppState,
};

/// A hook call from the broker: the secret checked, the body parsed.
pub struct Hook<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Hook<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        hook_input(state, &headers, &body).map(Hook).map_err(IntoResponse::into_response)
    }
}

fn hook_input<T: DeserializeOwned>(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<T, AppError> {
    let Some(secret) = &state.config.telemetry.mqtt_auth_secret else {
        return Err(AppError::NotFound("MQTT hooks are disabled (set MQTT_AUTH_SECRET)".into()));
    };
    let given = headers
        .get("x-mqtt-secret")
        .and_then(|v| v.to_str().ok())
        .or_else(|| crate::auth::extract::authorization(headers, "bearer"));
    if !given.is_some_and(|g| crate::util::constant_time_eq(g.as_bytes(), secret.expose().as_bytes())) {
        return Err(AppError::Unauthorized("missing or wrong MQTT hook secret".into()));
    }
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

/// Broker authentication hook: `username` is a device id and `password` its device token
/// (or the server's own credentials from `MQTT_URL`). 200 allows; 403 refuses.
#[utoipa::path(post, path = "/mqtt/auth", tag = "mqtt", request_body = MqttAuthIn,
    responses((status = 200, body = MqttAllow), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn mqtt_auth(
    State(state): State<AppState>,
    Hook(input): Hook<MqttAuthIn>,
) -> Result<Json<MqttAllow>, AppError> {
    Ok(Json(MqttAllow::new(hooks::authenticate(&state, &input).await?)))
}

/// Broker ACL hook: a device may publish only to `mash/devices/{itself}/telemetry` and
/// subscribe only to `mash/devices/{itself}/desired`; the server's identity may do anything.
#[utoipa::path(post, path = "/mqtt/acl", tag = "mqtt", request_body = MqttAclIn,
    responses((status = 200, body = MqttAllow), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn mqtt_acl(
    State(state): State<AppState>,
    Hook(input): Hook<MqttAclIn>,
) -> Result<Json<MqttAllow>, AppError> {
    Ok(Json(MqttAllow::new(hooks::authorize(&state, &input).await?)))
}

/// mosquitto-go-auth's superuser check: only the server's own identity is one.
#[utoipa::path(post, path = "/mqtt/superuser", tag = "mqtt", request_body = MqttSuperuserIn,
    responses((status = 200, body = MqttAllow), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn mqtt_superuser(
    State(state): State<AppState>,
    Hook(input): Hook<MqttSuperuserIn>,
) -> Result<Json<MqttAllow>, AppError> {
    Ok(Json(MqttAllow::new(hooks::superuser(&state, &input)?)))
}
