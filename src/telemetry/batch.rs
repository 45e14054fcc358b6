//! Reading validation, shared by HTTP and MQTT: the whole batch is checked before anything is
//! stored, and the first bad items are named by index (`items[3].metric`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{TelemetryError, store::Reading, types::ItemIn};
use crate::http::FieldError;

/// At most this many readings per batch.
pub const MAX_BATCH: usize = 5000;
/// At most this many bad items are listed in `details`.
const MAX_DETAILS: usize = 20;

/// How old or how far ahead a reading may be.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub backfill: Duration,
    pub max_future: Duration,
}

impl Window {
    /// `TELEMETRY_BACKFILL_DAYS` and `TELEMETRY_MAX_FUTURE_SECS`, as configured.
    pub fn of(cfg: &crate::config::TelemetryConfig) -> Self {
        Window { backfill: cfg.backfill, max_future: cfg.max_future }
    }
}

pub fn valid_metric(m: &str) -> bool {
    let b = m.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'.')
}

/// Parses a JSON list of readings, naming bad items as `items[3].value` (serde says `[3].value`).
pub fn parse_items(body: &[u8]) -> Result<Vec<ItemIn>, TelemetryError> {
    crate::http::extract::parse_json(body).map_err(|e| match TelemetryError::bad_input(e) {
        TelemetryError::Invalid { message, details } => {
            let rename = |f: String| if f.starts_with('[') { format!("items{f}") } else { f };
            let details: Vec<FieldError> =
                details.into_iter().map(|d| FieldError::new(rename(d.field), d.message)).collect();
            let message = match details.first() {
                Some(d) if d.field == "body" => "the body must be a JSON array of readings".to_string(),
                Some(d) => format!("invalid {}: {}", d.field, d.message),
                None => message,
            };
            TelemetryError::Invalid { message, details }
        }
        other => other,
    })
}

/// Checks every item; on success, the readings to store. `default_device` fills a missing
/// `deviceId` (the authenticated device, or the MQTT topic's device).
pub fn validate(
    items: Vec<ItemIn>,
    default_device: Option<Uuid>,
    now: DateTime<Utc>,
    window: Window,
) -> Result<Vec<Reading>, TelemetryError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(TelemetryError::invalid_field(
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
        return Err(TelemetryError::Invalid {
            message: format!("invalid {}: {}", first.field, first.message),
            details,
        });
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
