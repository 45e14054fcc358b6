//! What `POST /telemetry/batch` takes from a request: who sends it ([`Caller`]: a device with
//! its token, or a person) and the readings ([`BatchBody`]: JSON, within the configured body
//! limit, items named by index when they do not parse).

use axum::{
    body::to_bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};

use super::{TelemetryError, batch, types::ItemIn};
use crate::{
    auth::AuthUser,
    greenhouse::{DeviceAuth, device_auth},
    http::AppError,
    state::AppState,
};

/// Who sends a batch: a device (or gateway) with its token, or a person.
pub enum Caller {
    Device(DeviceAuth),
    User(AuthUser),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if device_auth::device_token(parts).is_some() {
            Ok(Caller::Device(DeviceAuth::from_request_parts(parts, state).await?))
        } else {
            Ok(Caller::User(AuthUser::from_request_parts(parts, state).await?))
        }
    }
}

/// The readings of a batch as sent: `Content-Type: application/json`, at most
/// `TELEMETRY_BODY_LIMIT_BYTES`, a JSON list of items (not yet validated).
pub struct BatchBody(pub Vec<ItemIn>);

impl FromRequest<AppState> for BatchBody {
    type Rejection = TelemetryError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(TelemetryError::ContentType);
        }
        let limit = state.config.telemetry.batch_body_limit;
        let bytes = to_bytes(req.into_body(), limit).await.map_err(|_| TelemetryError::TooLarge { limit })?;
        Ok(BatchBody(batch::parse_items(&bytes)?))
    }
}
