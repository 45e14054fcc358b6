//! Realtime: path subscriptions over WebSocket (`/realtime`) and SSE (`/realtime/sse`), with
//! a snapshot first, gapless resume, presence, and fan-out across instances over Redis. See
//! `docs/realtime.md`.
//!
//! Writers publish with [`Realtime::publish`]: it never blocks and never fails them.
//!
//! - `handlers/`: the two endpoints; `session/`: one connection's subscriptions and stream;
//!   `messages`: what both transports send besides events.
//! - `hub`: where a subscription starts (snapshot, replay or reset), over `topics` (this
//!   process's subscribers) and `replay` (ids and held events: in process, or in Redis).
//! - `paths`: every path, who may read it, its snapshot; `presence`: who is online.
//! - `conns`: every open connection, for revocation and shutdown; `outlet`: a connection's
//!   queue; `shards`: the per-path locks.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::routes;

mod conns;
mod handlers;
pub mod hub;
mod messages;
mod outlet;
pub mod paths;
pub mod presence;
mod replay;
mod session;
mod shards;
mod topics;

use hub::Hub;
use replay::Publish;

use crate::{metrics::Metrics, state::AppState};

/// The WebSocket and SSE endpoints.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(handlers::ws::realtime)).routes(routes!(handlers::sse::realtime_sse))
}

/// Process-wide realtime state.
pub struct Realtime {
    pub hub: Hub,
    pub presence: presence::Presence,
    conns: conns::Connections,
    metrics: Arc<Metrics>,
}

impl Realtime {
    pub fn new(config: &crate::Config, metrics: Arc<Metrics>) -> Self {
        Self {
            hub: Hub::new(&config.realtime, config.redis_url.as_ref(), metrics.clone()),
            presence: presence::Presence::new(&config.realtime, config.redis_url.as_ref()),
            conns: conns::Connections::new(config.realtime.queue),
            metrics,
        }
    }

    /// Publishes `data` on `path`. Never blocks, never fails: with nobody subscribed here the
    /// event is dropped before it is even serialised; with Redis it is queued for the
    /// publishing task. `version`, for paths whose state carries one, keeps an older state
    /// from ever following a newer one.
    pub fn publish<T: Serialize + ?Sized>(&self, path: &str, version: Option<i64>, data: &T) {
        let serialise = || serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        match self.hub.publish(path, version, &serialise) {
            Publish::Sent => {
                self.metrics.realtime_events_published.inc();
            }
            Publish::Dropped => {
                self.metrics.realtime_events_dropped.inc();
            }
            Publish::Skipped => {}
        }
    }

    /// Accepted (new) readings on `/live/sensors/{deviceId}`: one event per device with any
    /// (`readings` is sorted by device, as the store leaves it).
    pub fn publish_readings(&self, readings: &[crate::telemetry::store::Reading]) {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Live<'a> {
            device_id: Uuid,
            readings: Vec<One<'a>>,
        }
        #[derive(Serialize)]
        struct One<'a> {
            metric: &'a str,
            value: f64,
            ts: chrono::DateTime<chrono::Utc>,
        }
        for group in readings.chunk_by(|a, b| a.device_id == b.device_id) {
            let device_id = group[0].device_id;
            let path = live_sensors(device_id);
            if !self.hub.watches(&path) {
                continue;
            }
            let readings = group.iter().map(|r| One { metric: &r.metric, value: r.value, ts: r.ts }).collect();
            self.publish(&path, None, &Live { device_id, readings });
        }
    }

    /// Closes every connection (graceful shutdown): WebSockets with 1001, SSE streams end.
    pub fn shutdown(&self) {
        self.conns.shutdown();
    }

    /// Waits (at most `limit`) until every connection has closed and cleaned up (presence,
    /// `lastSeenAt`): WebSocket tasks outlive the HTTP server's drain.
    pub async fn closed(&self, limit: Duration) {
        self.conns.closed(limit).await;
    }
}

fn live_sensors(device_id: Uuid) -> String {
    format!("/live/sensors/{device_id}")
}

/// Background work: the sweep of paths and held events, closing revoked sessions'
/// connections, the replay store's own tasks (with Redis, the subscription that feeds this
/// process's subscribers) and the presence store's upkeep.
pub fn spawn_background(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let swept = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            swept.realtime.hub.sweep();
            swept.metrics.realtime_subscriptions.set(swept.realtime.hub.subscriptions() as i64);
        }
    }));
    let watched = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut rx = watched.auth.revocations.watch();
        loop {
            match rx.recv().await {
                Ok(ids) => watched.realtime.conns.close_sessions(|s| ids.contains(s)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let revocations = watched.auth.revocations.clone();
                    watched.realtime.conns.close_sessions(|s| revocations.is_revoked(s));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
    tasks.extend(state.realtime.hub.spawn());
    let kept = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(kept.config.realtime.ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = kept.realtime.presence.upkeep(&kept).await {
                tracing::warn!(error = %e, "presence upkeep failed");
            }
        }
    }));
    tasks
}
