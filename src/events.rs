//! The in-process publish interface for realtime events: a path (`/alerts/{growerId}`) and its
//! data. Publishing never blocks and never fails the writer: with nobody listening an event is
//! simply dropped, and a listener that falls behind loses the oldest events (and is told how
//! many). The realtime transports (WebSocket, SSE) subscribe here.

use std::sync::Arc;

use tokio::sync::broadcast;

/// One event on one path.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub path: String,
    pub data: serde_json::Value,
}

/// The bus.
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self { tx: broadcast::channel(4096).0 }
    }
}

impl Events {
    /// Publishes to every current subscriber; returns how many there were.
    pub fn publish(&self, path: String, data: serde_json::Value) -> usize {
        self.tx.send(Arc::new(Event { path, data })).unwrap_or(0)
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
