//! Realtime: path subscriptions over WebSocket (`/realtime`) and SSE (`/realtime/sse`), with
//! a snapshot first, gapless resume, presence, and fan-out across instances over Redis. See
//! `docs/realtime.md`.
//!
//! Writers publish with [`Realtime::publish`]: it never blocks and never fails them.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

pub mod hub;
pub mod paths;
pub mod presence;
mod redis;
mod session;
mod sse;
mod ws;

use hub::{CloseReason, ConnId, Delivery, Hub, Outlet};

use crate::{config::RealtimeConfig, metrics::Metrics, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ws::realtime)).routes(routes!(sse::realtime_sse))
}

/// Process-wide realtime state.
pub struct Realtime {
    pub hub: Hub,
    pub presence: presence::Presence,
    config: RealtimeConfig,
    redis_url: Option<crate::config::Secret>,
    bus: OnceLock<redis::Bus>,
    metrics: Arc<Metrics>,
    /// Every open connection and its session, for revocation and shutdown.
    conns: Mutex<HashMap<ConnId, (Uuid, Arc<Outlet>)>>,
    next_conn: AtomicU64,
    /// Names this process's connections in Redis presence.
    instance: Uuid,
    /// Set at shutdown: connections registered from then on are closed at once.
    closing: std::sync::atomic::AtomicBool,
}

impl Realtime {
    pub fn new(config: &crate::Config, metrics: Arc<Metrics>) -> Self {
        let rt = &config.realtime;
        Self {
            hub: Hub::new(rt.replay_events, rt.replay_window, config.redis_url.is_some()),
            presence: presence::Presence::default(),
            config: rt.clone(),
            redis_url: config.redis_url.clone(),
            bus: OnceLock::new(),
            metrics,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            instance: Uuid::now_v7(),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Publishes `data` on `path`. Never blocks, never fails: with nobody subscribed here the
    /// event is dropped before it is even serialised; with Redis it is queued for the
    /// publishing task. `version`, for paths whose state carries one, keeps an older state
    /// from ever following a newer one.
    pub fn publish<T: Serialize + ?Sized>(&self, path: &str, version: Option<i64>, data: &T) {
        let serialise = || serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        let Some(url) = &self.redis_url else {
            if self.hub.publish_local(path, version, serialise).is_some() {
                self.metrics.realtime_events_published.inc();
            }
            return;
        };
        let bus = self.bus.get_or_init(|| {
            let redis = crate::state::Redis::new(url.expose()).expect("REDIS_URL was parsed at startup");
            redis::Bus::start(redis, self.config.replay_events, self.config.replay_window, self.metrics.clone()).0
        });
        if bus.send(path, version, serialise()) {
            self.metrics.realtime_events_published.inc();
        } else {
            self.metrics.realtime_events_dropped.inc();
        }
    }

    /// Whether readings of these devices may have subscribers: with Redis always (they may be
    /// on another instance), in process when a device's path is active here.
    pub fn watches_readings(&self, readings: &[crate::telemetry::store::Reading]) -> bool {
        if self.redis_url.is_some() {
            return true;
        }
        let mut last = None;
        readings.iter().any(|r| {
            if last == Some(r.device_id) {
                return false;
            }
            last = Some(r.device_id);
            self.hub.is_active(&format!("/live/sensors/{}", r.device_id))
        })
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
            let path = format!("/live/sensors/{device_id}");
            if self.redis_url.is_none() && !self.hub.is_active(&path) {
                continue;
            }
            let readings = group.iter().map(|r| One { metric: &r.metric, value: r.value, ts: r.ts }).collect();
            self.publish(&path, None, &Live { device_id, readings });
        }
    }

    /// A new connection: its id, its outlet (queue and kill switch) and the queue's receiver.
    fn register(&self, session: Uuid) -> (ConnId, Arc<Outlet>, tokio::sync::mpsc::Receiver<Delivery>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (outlet, rx) = Outlet::new(self.config.queue);
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (session, outlet.clone()));
        if self.closing.load(Ordering::SeqCst) {
            outlet.kill(CloseReason::Shutdown);
        }
        (id, outlet, rx)
    }

    /// The connection now runs on another session (a new `auth` message).
    fn set_session(&self, conn: ConnId, session: Uuid) {
        if let Some(entry) = self.conns.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&conn) {
            entry.0 = session;
        }
    }

    fn unregister(&self, conn: ConnId) {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn);
    }

    /// Closes the connections of revoked sessions.
    fn close_sessions(&self, revoked: impl Fn(&Uuid) -> bool) {
        for (session, outlet) in self.conns.lock().unwrap_or_else(|p| p.into_inner()).values() {
            if revoked(session) {
                outlet.kill(CloseReason::Revoked);
            }
        }
    }

    /// Closes every connection (graceful shutdown): WebSockets with 1001, SSE streams end.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for (_, outlet) in self.conns.lock().unwrap_or_else(|p| p.into_inner()).values() {
            outlet.kill(CloseReason::Shutdown);
        }
    }

    /// Waits (at most `limit`) until every connection has closed and cleaned up (presence,
    /// `lastSeenAt`): WebSocket tasks outlive the HTTP server's drain.
    pub async fn closed(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while !self.conns.lock().unwrap_or_else(|p| p.into_inner()).is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A name for connection `conn` that is unique across instances.
    fn conn_name(&self, conn: ConnId) -> String {
        format!("{}:{conn}", self.instance)
    }
}

/// Background work: the replay-buffer sweep, closing revoked sessions' connections, and with
/// Redis the subscription that feeds the hub and the presence upkeep.
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
                Ok(ids) => watched.realtime.close_sessions(|s| ids.contains(s)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let revocations = watched.auth.revocations.clone();
                    watched.realtime.close_sessions(|s| revocations.is_revoked(s));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
    if let Some(url) = state.config.redis_url.clone() {
        let fed = state.clone();
        tasks.push(crate::pubsub::subscribe(url, redis::CHANNEL, move |heard| match heard {
            crate::pubsub::Heard::Message(payload) => redis::on_message(&fed.realtime.hub, payload),
            // (Re)subscribed: events published while the subscription was down are read back
            // from the replay streams. One lost in a still-running subscription shows as a gap
            // in ids at the next event, which the connection fills the same way (or resets).
            crate::pubsub::Heard::Subscribed => {
                let caught = fed.clone();
                tokio::spawn(async move {
                    if let Some(redis) = &caught.redis
                        && let Err(e) = redis::catch_up(redis, &caught.realtime.hub).await
                    {
                        tracing::warn!(error = %e, "realtime: could not catch up from Redis");
                    }
                });
            }
        }));
        let kept = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(kept.config.realtime.ping_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = kept.realtime.presence.upkeep(&kept).await {
                    tracing::warn!(error = %e, "presence upkeep in Redis failed");
                }
            }
        }));
    }
    tasks
}
