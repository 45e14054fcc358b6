//! Wire types of telemetry: a reading as sent (`ItemIn`), a batch's outcome (`BatchOut`), and
//! the history query and answer (`TelemetryQuery`, `TelemetryOut`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::Agg;

/// One reading as sent: `{deviceId, metric, value, ts}`. Unknown fields are ignored, so
/// gateways may send more (units, quality flags) without breaking.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemIn {
    /// Required over HTTP with a person's token; a device may leave it out (it means itself),
    /// and on MQTT it defaults to the topic's device.
    pub device_id: Option<Uuid>,
    /// `^[a-z][a-z0-9_.]{0,63}$`, e.g. `temperature`, `soil.moisture_2`.
    pub metric: String,
    /// A finite number.
    pub value: f64,
    /// RFC 3339 (`2026-11-22T10:00:00Z`); kept to the microsecond.
    pub ts: String,
}

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchOut {
    /// Readings stored now.
    pub accepted: u64,
    /// Readings already stored before (same device, metric and ts), not stored twice.
    pub duplicates: u64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// The metric (required).
    pub metric: Option<String>,
    /// Start, inclusive (RFC 3339; default `to` minus 24 hours).
    pub from: Option<String>,
    /// End, exclusive (RFC 3339; default now).
    pub to: Option<String>,
    /// `1m`, `5m`, `1h` or `1d`: aggregate per bucket. Without it, raw readings by cursor.
    pub bucket: Option<String>,
    /// `avg` (default), `min`, `max`, `sum`, `count` or `last` (needs `bucket`).
    pub agg: Option<String>,
    /// Raw readings per page (default 1000, at most 10000).
    pub limit: Option<String>,
    /// `meta.nextCursor` of the previous raw page.
    pub cursor: Option<String>,
}

/// One point: a bucket's start and its aggregate, or one raw reading.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// Paging of raw readings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RawMeta {
    pub limit: u64,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryOut {
    pub device_id: Uuid,
    pub metric: String,
    /// The bucket asked for, or `null` for raw readings.
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agg: Option<Agg>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// In time order. Buckets without readings are absent; an empty range gives `[]`.
    pub points: Vec<Point>,
    /// Raw readings only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<RawMeta>,
}
