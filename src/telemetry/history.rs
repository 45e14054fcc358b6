//! `GET /devices/{id}/telemetry`: history of one metric, bucketed in SQL or raw by cursor.

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    batch::valid_metric,
    store::{self, Agg, Series},
    ts_param,
};
use crate::{
    auth::AuthUser,
    greenhouse::access::{self, Need},
    http::{
        AppError, Json, Path, Query,
        pagination::{decode_cursor, encode_cursor, parse_positive},
    },
    state::AppState,
};

/// At most this many buckets per answer; a longer range needs a coarser bucket.
const MAX_BUCKETS: i64 = 10_000;
const DEFAULT_RAW_LIMIT: u64 = 1000;
const MAX_RAW_LIMIT: u64 = 10_000;

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

fn bucket_secs(raw: &str) -> Option<i64> {
    match raw {
        "1m" => Some(60),
        "5m" => Some(300),
        "1h" => Some(3600),
        "1d" => Some(86_400),
        _ => None,
    }
}

fn parse_agg(raw: &str) -> Option<Agg> {
    serde_json::from_value(serde_json::Value::String(raw.to_string())).ok()
}

/// History of one metric of a device. With `bucket`, one point per UTC-aligned bucket that has
/// readings, aggregated in SQL (`ts` is the bucket's start); without it, raw readings in time
/// order, paged by `cursor`.
#[utoipa::path(get, path = "/devices/{id}/telemetry", tag = "telemetry", security(("bearer" = [])),
    params(("id" = Uuid, Path), TelemetryQuery),
    responses((status = 200, body = TelemetryOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn get_telemetry(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<TelemetryQuery>,
) -> Result<Json<TelemetryOut>, AppError> {
    let metric = q.metric.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let metric = metric.ok_or_else(|| AppError::invalid_field("metric", "is required"))?;
    if !valid_metric(metric) {
        return Err(AppError::invalid_field("metric", "must match ^[a-z][a-z0-9_.]{0,63}$"));
    }
    let to = ts_param("to", q.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = ts_param("from", q.from.as_deref())?.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(AppError::invalid_field("from", "must be before `to`"));
    }
    let bucket = match q.bucket.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some((
            b.to_string(),
            bucket_secs(b).ok_or_else(|| AppError::invalid_field("bucket", "must be 1m, 5m, 1h or 1d"))?,
        )),
    };
    let agg = match q.agg.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(
            parse_agg(a).ok_or_else(|| AppError::invalid_field("agg", "must be avg, min, max, sum, count or last"))?,
        ),
    };
    access::device(&state.db, &me, id, Need::Read).await?;
    let series = Series { device_id: id, metric: metric.to_string(), from, to };

    if let Some((name, secs)) = bucket {
        if (to - from).num_seconds() / secs > MAX_BUCKETS {
            return Err(AppError::invalid_field(
                "bucket",
                format!("the range holds more than {MAX_BUCKETS} buckets; pick a larger bucket"),
            ));
        }
        let agg = agg.unwrap_or(Agg::Avg);
        let points = store::buckets(&state.db, &series, secs, agg).await?;
        return Ok(Json(TelemetryOut {
            device_id: id,
            metric: series.metric,
            bucket: Some(name),
            agg: Some(agg),
            from,
            to,
            points: points.into_iter().map(|(ts, value)| Point { ts, value }).collect(),
            meta: None,
        }));
    }
    if agg.is_some() {
        return Err(AppError::invalid_field("agg", "needs `bucket`"));
    }
    let limit = parse_positive("limit", q.limit.as_deref(), DEFAULT_RAW_LIMIT)?.min(MAX_RAW_LIMIT);
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let micros: i64 = decode_cursor(c)?;
            Some(
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| AppError::invalid_field("cursor", "is not valid"))?,
            )
        }
    };
    let mut rows = store::raw(&state.db, &series, after, limit + 1).await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more { rows.last().map(|(ts, _)| encode_cursor(&ts.timestamp_micros())) } else { None };
    Ok(Json(TelemetryOut {
        device_id: id,
        metric: series.metric,
        bucket: None,
        agg: None,
        from,
        to,
        points: rows.into_iter().map(|(ts, value)| Point { ts, value }).collect(),
        meta: Some(RawMeta { limit, has_more, next_cursor }),
    }))
}
