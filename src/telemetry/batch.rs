//! Reading validation, shared by HTTP and MQTT: the whole batch is checked before anything is
//! stored, and the first bad items are named by index (`items[3].metric`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::store::Reading;
use crate::http::{AppError, error::FieldError};

/// At most this many readings per batch.
pub const MAX_BATCH: usize = 5000;
/// At most this many bad items are listed in `details`.
const MAX_DETAILS: usize = 20;

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

/// How old or how far ahead a reading may be.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub backfill: Duration,
    pub max_future: Duration,
}

pub fn valid_metric(m: &str) -> bool {
    let b = m.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'.')
}

/// Renames serde's `[3].value` paths to `items[3].value`.
pub fn name_items(err: AppError) -> AppError {
    match err {
        AppError::BadRequest { message, details } => {
            let rename = |f: String| if f.starts_with('[') { format!("items{f}") } else { f };
            let details: Vec<FieldError> =
                details.into_iter().map(|d| FieldError::new(rename(d.field), d.message)).collect();
            let message = match details.first() {
                Some(d) if d.field == "body" => "the body must be a JSON array of readings".to_string(),
                Some(d) => format!("invalid {}: {}", d.field, d.message),
                None => message,
            };
            AppError::BadRequest { message, details }
        }
        other => other,
    }
}

/// Checks every item; on success, the readings to store. `default_device` fills a missing
/// `deviceId` (the authenticated device, or the MQTT topic's device).
pub fn validate(
    items: Vec<ItemIn>,
    default_device: Option<Uuid>,
    now: DateTime<Utc>,
    window: Window,
) -> Result<Vec<Reading>, AppError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AppError::invalid_field(
            "items",
            format!("must hold 1 to {MAX_BATCH} readings, not {}", items.len()),
        ));
    }
    let earliest = now - chrono::Duration::from_std(window.backfill).unwrap_or_default();
    let latest = now + chrono::Duration::from_std(window.max_future).unwrap_or_default();
    let mut details = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut bad = |field: &str, message: String| {
            if details.len() < MAX_DETAILS {
                details.push(FieldError::new(format!("items[{i}].{field}"), message));
            }
        };
        let device_id = item.device_id.or(default_device);
        if device_id.is_none() {
            bad("deviceId", "is required".into());
        }
        if !valid_metric(&item.metric) {
            bad("metric", "must match ^[a-z][a-z0-9_.]{0,63}$".into());
        }
        if !item.value.is_finite() {
            bad("value", "must be a finite number".into());
        }
        let ts = match DateTime::parse_from_rfc3339(item.ts.trim()) {
            Ok(ts) => {
                let ts = ts.with_timezone(&Utc);
                // Both stores keep microseconds; truncating here makes "the same reading" mean
                // the same thing everywhere.
                let ts = DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts);
                if ts < earliest {
                    bad("ts", format!("is older than the accepted window (after {})", earliest.to_rfc3339()));
                } else if ts > latest {
                    bad("ts", format!("is too far in the future (after {})", latest.to_rfc3339()));
                }
                Some(ts)
            }
            Err(_) => {
                bad("ts", "must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z".into());
                None
            }
        };
        if let (Some(device_id), Some(ts)) = (device_id, ts) {
            out.push(Reading { device_id, metric: item.metric, ts, value: item.value });
        }
    }
    if let Some(first) = details.first() {
        return Err(AppError::BadRequest { message: format!("invalid {}: {}", first.field, first.message), details });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_contract_pattern() {
        for ok in ["t", "temperature", "soil.moisture_2", &format!("a{}", "b".repeat(63))] {
            assert!(valid_metric(ok), "{ok}");
        }
        for bad in ["", "Temp", "1t", "_t", "t-1", "t ", "é", &format!("a{}", "b".repeat(64))] {
            assert!(!valid_metric(bad), "{bad}");
        }
    }
}
