//! History of one metric of one device, for people who may read the device: with `bucket`,
//! one point per UTC-aligned bucket that has readings, aggregated in SQL (`ts` is the bucket's
//! start; at most 10,000 buckets per answer); without it, raw readings in time order, paged by
//! cursor. The range is `[from, to)`, by default the last 24 hours.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    TelemetryError,
    batch::valid_metric,
    store::{self, Agg, Series},
    types::{Point, RawMeta, TelemetryOut, TelemetryQuery},
};
use crate::{
    auth::AuthUser,
    db::Db,
    greenhouse::access::{self, Need},
    http::pagination::{decode_cursor, encode_cursor, parse_positive},
};

/// At most this many buckets per answer; a longer range needs a coarser bucket.
const MAX_BUCKETS: i64 = 10_000;
const DEFAULT_RAW_LIMIT: u64 = 1000;
const MAX_RAW_LIMIT: u64 = 10_000;

/// The history `q` asks for, of device `id`. Parameters are checked before the device (a bad
/// one is a 400 whichever device it names), except `limit` and `cursor`, read by raw pages only.
pub async fn read(db: &Db, me: &AuthUser, id: Uuid, q: &TelemetryQuery) -> Result<TelemetryOut, TelemetryError> {
    let metric = q.metric.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let metric = metric.ok_or_else(|| TelemetryError::invalid_field("metric", "is required"))?;
    if !valid_metric(metric) {
        return Err(TelemetryError::invalid_field("metric", "must match ^[a-z][a-z0-9_.]{0,63}$"));
    }
    let to = ts_param("to", q.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = ts_param("from", q.from.as_deref())?.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(TelemetryError::invalid_field("from", "must be before `to`"));
    }
    let bucket = match present(&q.bucket) {
        None => None,
        Some(b) => Some((
            b.to_string(),
            bucket_secs(b).ok_or_else(|| TelemetryError::invalid_field("bucket", "must be 1m, 5m, 1h or 1d"))?,
        )),
    };
    let agg = match present(&q.agg) {
        None => None,
        Some(a) => Some(
            parse_agg(a)
                .ok_or_else(|| TelemetryError::invalid_field("agg", "must be avg, min, max, sum, count or last"))?,
        ),
    };
    access::device(db, me, id, Need::Read).await?;
    let series = Series { device_id: id, metric: metric.to_string(), from, to };
    match bucket {
        Some((name, secs)) => buckets(db, series, name, secs, agg).await,
        None if agg.is_some() => Err(TelemetryError::invalid_field("agg", "needs `bucket`")),
        None => raw(db, series, q).await,
    }
}

async fn buckets(
    db: &Db,
    series: Series,
    name: String,
    secs: i64,
    agg: Option<Agg>,
) -> Result<TelemetryOut, TelemetryError> {
    if (series.to - series.from).num_seconds() / secs > MAX_BUCKETS {
        return Err(TelemetryError::invalid_field(
            "bucket",
            format!("the range holds more than {MAX_BUCKETS} buckets; pick a larger bucket"),
        ));
    }
    let agg = agg.unwrap_or(Agg::Avg);
    let points = store::buckets(db, &series, secs, agg).await?;
    Ok(TelemetryOut {
        device_id: series.device_id,
        bucket: Some(name),
        agg: Some(agg),
        from: series.from,
        to: series.to,
        points: points.into_iter().map(|(ts, value)| Point { ts, value }).collect(),
        meta: None,
        metric: series.metric,
    })
}

async fn raw(db: &Db, series: Series, q: &TelemetryQuery) -> Result<TelemetryOut, TelemetryError> {
    let limit = parse_positive("limit", q.limit.as_deref(), DEFAULT_RAW_LIMIT)
        .map_err(TelemetryError::bad_input)?
        .min(MAX_RAW_LIMIT);
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let micros: i64 = decode_cursor(c).map_err(TelemetryError::bad_input)?;
            Some(
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| TelemetryError::invalid_field("cursor", "is not valid"))?,
            )
        }
    };
    let mut rows = store::raw(db, &series, after, limit + 1).await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more { rows.last().map(|(ts, _)| encode_cursor(&ts.timestamp_micros())) } else { None };
    Ok(TelemetryOut {
        device_id: series.device_id,
        bucket: None,
        agg: None,
        from: series.from,
        to: series.to,
        points: rows.into_iter().map(|(ts, value)| Point { ts, value }).collect(),
        meta: Some(RawMeta { limit, has_more, next_cursor }),
        metric: series.metric,
    })
}

fn present(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A timestamp query parameter (RFC 3339).
fn ts_param(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, TelemetryError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| TelemetryError::invalid_field(field, "must be an RFC 3339 timestamp")),
    }
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
