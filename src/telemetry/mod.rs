//! Telemetry: ingestion over HTTP (`POST /telemetry/batch`) and MQTT, the time series
//! (`sensor_readings`), live state (`device_state`), history with SQL-side buckets, and the
//! maintenance task (partitions ahead, retention).

use std::collections::{HashMap, HashSet};

use axum::{
    body::to_bytes,
    extract::{DefaultBodyLimit, FromRequestParts, Request, State},
    http::{StatusCode, header, request::Parts},
};
use chrono::{DateTime, Utc};
use sea_orm::ColumnTrait;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

pub mod batch;
mod history;
pub mod maintenance;
pub mod mqtt;
pub mod store;

use crate::{
    auth::AuthUser,
    greenhouse::{
        DeviceAuth,
        access::{self, Need},
        device_auth,
        entity::device,
    },
    http::{AppError, Json, error::FieldError},
    metrics::{RejectLabels, SourceLabels},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The limit is the configured TELEMETRY_BODY_LIMIT_BYTES, enforced in the handler.
        .merge(OpenApiRouter::new().routes(routes!(post_batch)).layer(DefaultBodyLimit::disable()))
        .routes(routes!(history::get_telemetry))
        .merge(mqtt::router())
}

/// Process-wide telemetry state.
#[derive(Default)]
pub struct TelemetryState {
    pub partitions: store::Partitions,
    /// Publishes desired state to devices when the MQTT subscriber runs.
    pub mqtt: tokio::sync::OnceCell<mqtt::Publisher>,
}

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

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchOut {
    /// Readings stored now.
    pub accepted: u64,
    /// Readings already stored before (same device, metric and ts), not stored twice.
    pub duplicates: u64,
}

/// The devices of `readings` that `user` may not write to, as 403 details by first index.
async fn check_user_may_write(state: &AppState, user: &AuthUser, readings: &[store::Reading]) -> Result<(), AppError> {
    access::require_greenhouses(user)?;
    let ids: HashSet<Uuid> = readings.iter().map(|r| r.device_id).collect();
    let growers =
        crate::greenhouse::devices::live_growers(&state.db, device::Column::Id.is_in(ids.iter().copied())).await?;
    let mut writable: HashMap<Uuid, bool> = HashMap::new();
    if !user.is_admin() {
        for grower_id in growers.values().copied().collect::<HashSet<_>>() {
            let ok = access::grower(&state.db, user, grower_id, Need::Write).await.is_ok();
            writable.insert(grower_id, ok);
        }
    }
    let mut refused = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in readings.iter().enumerate() {
        let ok = growers.get(&r.device_id).is_some_and(|g| user.is_admin() || writable.get(g) == Some(&true));
        if !ok && seen.insert(r.device_id) {
            refused.push(FieldError::new(format!("items[{i}].deviceId"), "is not a device you may write to"));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let message = format!("{}: not a device you may write to; nothing was stored", refused[0].field);
    Err(AppError::ForbiddenWith { message, details: refused })
}

/// Validates and stores readings from `source`; the single path of HTTP and MQTT.
pub async fn ingest(
    state: &AppState,
    source: &'static str,
    mut readings: Vec<store::Reading>,
) -> Result<BatchOut, AppError> {
    let total = readings.len() as u64;
    // Readings some alert rule watches are evaluated by a job that commits with the batch.
    let jobs = crate::alerts::watched(state, &readings, Utc::now()).await?;
    let new = store::insert(&state.db, &state.telemetry.partitions, &mut readings, &jobs).await?;
    if !jobs.is_empty() {
        state.jobs.wake();
    }
    let fresh: Vec<store::Reading> =
        readings.iter().zip(&new).filter(|(_, new)| **new).map(|(r, _)| r.clone()).collect();
    let accepted = fresh.len() as u64;
    // A subscription made while the batch was stored read its snapshot before this commit, so
    // it must get these readings: publishing after the commit reaches it (paths without
    // subscribers drop them at once).
    state.realtime.publish_readings(&fresh);
    let duplicates = total - accepted;
    state.metrics.telemetry_ingested.get_or_create(&SourceLabels { source }).inc_by(accepted);
    state.metrics.telemetry_duplicates.get_or_create(&SourceLabels { source }).inc_by(duplicates);
    let devices: Vec<Uuid> = readings.iter().map(|r| r.device_id).collect::<HashSet<_>>().into_iter().collect();
    state.greenhouse.seen(&state.db, &devices).await;
    Ok(BatchOut { accepted, duplicates })
}

/// Counts a refused batch or message.
pub fn rejected(state: &AppState, source: &'static str, reason: &'static str) {
    state.metrics.telemetry_rejected.get_or_create(&RejectLabels { source, reason }).inc();
}

fn reject_reason(e: &AppError) -> &'static str {
    match e.status() {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "forbidden",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content_type",
        s if s.is_server_error() => "unavailable",
        _ => "other",
    }
}

/// Stores a batch of readings. The whole batch is validated first: one bad item refuses it
/// with 400 naming the item (`items[3].ts`), and nothing is stored. A reading already stored
/// (same device, metric and ts) is counted in `duplicates` and not stored twice, so resending
/// a batch after a lost answer is safe. 202 comes only after the readings are committed.
///
/// A device (`Authorization: Device <token>`) may only write its own readings; a person needs
/// write access to each device's grower.
#[utoipa::path(post, path = "/telemetry/batch", tag = "telemetry", security(("bearer" = []), ("device" = [])),
    request_body(content = Vec<batch::ItemIn>, description = "1 to 5000 readings"),
    responses((status = 202, body = BatchOut), (status = 400), (status = 401), (status = 403), (status = 413), (status = 415)))]
#[tracing::instrument(skip_all)]
async fn post_batch(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, Json<BatchOut>), AppError> {
    let result = async {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(AppError::UnsupportedMediaType("expected `Content-Type: application/json`".into()));
        }
        let limit = state.config.telemetry.batch_body_limit;
        let bytes = to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| AppError::PayloadTooLarge(format!("a batch body may be at most {limit} bytes")))?;
        let items: Vec<batch::ItemIn> = crate::http::extract::parse_json(&bytes).map_err(batch::name_items)?;
        let own = match &caller {
            Caller::Device(d) => Some(d.device_id),
            Caller::User(_) => None,
        };
        let window =
            batch::Window { backfill: state.config.telemetry.backfill, max_future: state.config.telemetry.max_future };
        let readings = batch::validate(items, own, Utc::now(), window)?;
        match &caller {
            Caller::Device(d) => {
                if let Some(i) = readings.iter().position(|r| r.device_id != d.device_id) {
                    let field = format!("items[{i}].deviceId");
                    return Err(AppError::ForbiddenWith {
                        message: format!("{field}: a device may only send its own readings; nothing was stored"),
                        details: vec![FieldError::new(field, "is not the authenticated device")],
                    });
                }
            }
            Caller::User(u) => check_user_may_write(&state, u, &readings).await?,
        }
        ingest(&state, "http", readings).await
    }
    .await;
    match result {
        Ok(out) => Ok((StatusCode::ACCEPTED, Json(out))),
        Err(e) => {
            rejected(&state, "http", reject_reason(&e));
            Err(e)
        }
    }
}

/// Tells a device about its new desired state over MQTT (retained, so a device that connects
/// later gets the latest), when the MQTT subscriber runs.
pub async fn desired_changed(state: &AppState, device_id: Uuid, desired: &serde_json::Value, version: i64) {
    if let Some(publisher) = state.telemetry.mqtt.get() {
        publisher.desired(device_id, desired, version).await;
    }
}

/// Parses a timestamp query parameter.
pub fn ts_param(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| AppError::invalid_field(field, "must be an RFC 3339 timestamp")),
    }
}
