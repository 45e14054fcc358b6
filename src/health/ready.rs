//! Readiness: the database and, when configured, Redis each get one round trip, at the same
//! time, two seconds at most. And who may read `/metrics`.

use std::{collections::BTreeMap, time::Duration};

use axum::http::{HeaderMap, header};

use super::HealthError;
use crate::{http::FieldError, state::AppState};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `ok` for each dependency that answered; [`HealthError::NotReady`] naming each that did not.
pub(super) async fn check(state: &AppState) -> Result<BTreeMap<&'static str, &'static str>, HealthError> {
    let db = async { tokio::time::timeout(CHECK_TIMEOUT, crate::db::ping(&state.db)).await };
    let redis = async {
        match &state.redis {
            None => None,
            Some(r) => Some(tokio::time::timeout(CHECK_TIMEOUT, r.ping()).await),
        }
    };
    let (db, redis) = tokio::join!(db, redis);
    let mut checks = BTreeMap::new();
    let mut failed = Vec::new();
    match db {
        Ok(Ok(())) => {
            checks.insert("database", "ok");
        }
        Ok(Err(e)) => failed.push(FieldError::new("database", format!("down: {}", first_line(&e.to_string())))),
        Err(_) => failed.push(FieldError::new("database", "down: no answer within 2s")),
    }
    match redis {
        None => {}
        Some(Ok(Ok(()))) => {
            checks.insert("redis", "ok");
        }
        Some(Ok(Err(e))) => failed.push(FieldError::new("redis", format!("down: {}", first_line(&e.to_string())))),
        Some(Err(_)) => failed.push(FieldError::new("redis", "down: no answer within 2s")),
    }
    if failed.is_empty() {
        return Ok(checks);
    }
    let not_ready = HealthError::NotReady { failed };
    tracing::warn!(message = %not_ready, "readiness check failed");
    Err(not_ready)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// With `METRICS_TOKEN` set, `/metrics` needs it as the bearer token.
pub(super) fn metrics_allowed(state: &AppState, headers: &HeaderMap) -> Result<(), HealthError> {
    let Some(token) = &state.config.metrics_token else { return Ok(()) };
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let ok = presented.is_some_and(|p| crate::util::constant_time_eq(p.as_bytes(), token.expose().as_bytes()));
    if ok { Ok(()) } else { Err(HealthError::MetricsToken) }
}
