//! Realtime connections (WebSocket and SSE): keep-alive, timeouts, queues and replay.

use std::time::Duration;

use super::env::{ConfigError, Env, bad};

/// Realtime connections (WebSocket and SSE): keep-alive, timeouts, queues and replay.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Server pings (WebSocket) and keep-alive comments (SSE) go out this often.
    pub ping_interval: Duration,
    /// A WebSocket from which nothing arrived for this long is closed as dead.
    pub idle_timeout: Duration,
    /// Time for the first `auth` message of a connection without a token in its URL.
    pub auth_timeout: Duration,
    /// Time for a new `auth` message after `auth_expired`.
    pub auth_grace: Duration,
    /// Outbound messages a connection may fall behind before it is closed as too slow.
    pub queue: usize,
    /// Events held per path for resume.
    pub replay_events: usize,
    /// How long they are held (and a path's buffer after its last subscriber left).
    pub replay_window: Duration,
    /// Paths one connection may subscribe to.
    pub max_subscriptions: usize,
}

impl RealtimeConfig {
    pub(super) fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ping_interval = env.seconds("REALTIME_PING_SECS", 10)?;
        let idle_timeout = env.seconds("REALTIME_IDLE_TIMEOUT_SECS", 30)?;
        if idle_timeout <= ping_interval {
            return Err(bad("REALTIME_IDLE_TIMEOUT_SECS", "must be longer than REALTIME_PING_SECS"));
        }
        Ok(Self {
            ping_interval,
            idle_timeout,
            auth_timeout: env.seconds("REALTIME_AUTH_TIMEOUT_SECS", 10)?,
            auth_grace: env.seconds("REALTIME_AUTH_GRACE_SECS", 60)?,
            queue: env.ranged("REALTIME_QUEUE", 256, 1..=65_536, "a whole number")?,
            replay_events: env.ranged("REALTIME_REPLAY_EVENTS", 256, 1..=100_000, "a whole number")?,
            replay_window: env.seconds("REALTIME_REPLAY_SECS", 300)?,
            max_subscriptions: env.ranged("REALTIME_MAX_SUBSCRIPTIONS", 100, 1..=10_000, "a whole number")?,
        })
    }
}
