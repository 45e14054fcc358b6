//! The hub: this process's subscribers ([`Topics`]) and the store that assigns ids and holds
//! events for resume ([`Replay`]), chosen once at start: in process, or Redis with `REDIS_URL`.
//!
//! Where a subscription starts (a snapshot, exactly the missed events, or a reset) is decided
//! here, once, for both stores: the subscriber is attached first, so every later event reaches
//! it, then the store says which id the start covers.

use std::sync::Arc;

pub use super::outlet::{CloseReason, ConnId, Delivery, Frame, Outlet};
use super::{
    replay::{self, Publish, Replay, Unavailable},
    topics::Topics,
};
use crate::{config::RealtimeConfig, metrics::Metrics};

/// What a subscription starts from.
#[derive(Debug)]
pub enum Start {
    /// Read a snapshot; it covers every event up to `id`.
    Snapshot { id: u64 },
    /// Exactly the events after the client's `since`, all still held.
    Replay { events: Vec<Delivery>, last: u64 },
    /// The events after `since` are no longer held (or `since` was never issued): a reset and
    /// a snapshot covering up to `id`.
    Reset { id: u64 },
}

/// This process's subscribers and the store of ids and held events: the one way realtime
/// publishes, subscribes and resumes.
pub struct Hub {
    topics: Arc<Topics>,
    replay: Box<dyn Replay>,
}

impl Hub {
    /// The hub for this configuration: Redis holds ids and events when `redis_url` is set.
    pub fn new(config: &RealtimeConfig, redis_url: Option<&crate::config::Secret>, metrics: Arc<Metrics>) -> Self {
        let (keep, window) = (config.replay_events, config.replay_window);
        let topics = Arc::new(Topics::new(window));
        let replay: Box<dyn Replay> = match redis_url {
            Some(url) => Box::new(replay::Redis::new(url, topics.clone(), keep, window, metrics)),
            None => Box::new(replay::Memory::new(topics.clone(), keep, window)),
        };
        Self { topics, replay }
    }

    /// Publishes an event on `path` (see [`Replay::publish`]).
    pub fn publish(&self, path: &str, version: Option<i64>, data: &dyn Fn() -> String) -> Publish {
        self.replay.publish(path, version, data)
    }

    /// Whether an event on `path` may have a subscriber.
    pub fn watches(&self, path: &str) -> bool {
        self.replay.watches(path)
    }

    /// Adds a subscriber to `path`. Live events reach `outlet` from this moment on, so nothing
    /// falls between the start ([`Attached::start`], from `since` when resuming) and the live
    /// stream. An event both covered by the start and received live comes twice, with the same
    /// id: the session keeps the first.
    pub fn attach<'h>(&'h self, path: &'h str, conn: ConnId, outlet: &Arc<Outlet>, since: Option<u64>) -> Attached<'h> {
        self.topics.attach(path, conn, outlet);
        Attached { hub: self, path, since }
    }

    /// Removes a subscriber; the path stays active for the replay window.
    pub fn detach(&self, path: &str, conn: ConnId) {
        self.topics.detach(path, conn);
    }

    /// The held events of `path` after `after` up to `upto` (a gap in a live stream), when
    /// every one is still held and the store can be read.
    pub async fn held(&self, path: &str, after: u64, upto: u64) -> Option<Vec<Delivery>> {
        self.replay.held(path, after, upto).await.ok().flatten()
    }

    /// The highest version delivered here on `path`.
    pub fn version(&self, path: &str) -> Option<i64> {
        self.topics.version(path)
    }

    /// Forgets closed connections, paths no longer active and events no longer held.
    pub fn sweep(&self) {
        self.topics.sweep();
        self.replay.sweep();
    }

    /// Subscriptions held here, for the metrics.
    pub fn subscriptions(&self) -> usize {
        self.topics.subscriptions()
    }

    /// The store's background tasks.
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.replay.spawn()
    }
}

/// A subscriber just attached, before it knows where it starts.
pub struct Attached<'h> {
    hub: &'h Hub,
    path: &'h str,
    since: Option<u64>,
}

impl Attached<'_> {
    /// Where the subscription starts: a snapshot without `since`; exactly the events after
    /// `since` when every one is held; a reset otherwise (also for an id never issued).
    pub async fn start(self) -> Result<Start, Unavailable> {
        let replay = &self.hub.replay;
        let current = replay.current(self.path).await?;
        let Some(since) = self.since else { return Ok(Start::Snapshot { id: current }) };
        if since > current {
            return Ok(Start::Reset { id: current });
        }
        Ok(match replay.held(self.path, since, current).await? {
            Some(events) => Start::Replay { events, last: current },
            None => Start::Reset { id: current },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A hub on the in-process store, holding `keep` events per path.
    fn hub(keep: usize) -> Hub {
        let window = Duration::from_secs(60);
        let topics = Arc::new(Topics::new(window));
        Hub { replay: Box::new(replay::Memory::new(topics.clone(), keep, window)), topics }
    }

    async fn start(hub: &Hub, conn: ConnId, outlet: &Arc<Outlet>, since: Option<u64>) -> Start {
        hub.attach("/p", conn, outlet, since).start().await.unwrap()
    }

    fn publish(hub: &Hub, version: Option<i64>, data: &str) -> Publish {
        hub.publish("/p", version, &|| data.to_string())
    }

    #[test]
    fn an_inactive_path_drops_events_without_serialising_them() {
        let hub = hub(8);
        assert_eq!(hub.publish("/p", None, &|| panic!("serialised for nobody")), Publish::Skipped);
        assert!(!hub.watches("/p"));
    }

    #[tokio::test]
    async fn ids_are_consecutive_and_resume_replays_exactly_the_missed_events() {
        let hub = hub(8);
        let (outlet, mut rx) = Outlet::new(16);
        let Start::Snapshot { id: start } = start(&hub, 1, &outlet, None).await else { panic!() };
        for i in 0..3 {
            assert_eq!(publish(&hub, None, &i.to_string()), Publish::Sent);
        }
        let ids: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().id).collect();
        assert_eq!(ids, vec![start + 1, start + 2, start + 3]);
        hub.detach("/p", 1);
        let Start::Replay { events, last } = start_at(&hub, 2, &outlet, start + 1).await else { panic!() };
        assert_eq!(events.iter().map(|f| f.id).collect::<Vec<_>>(), vec![start + 2, start + 3]);
        assert_eq!(last, start + 3);
        assert!(
            matches!(start_at(&hub, 3, &outlet, start + 3).await, Start::Replay { events, .. } if events.is_empty())
        );
        assert!(matches!(start_at(&hub, 4, &outlet, 7).await, Start::Reset { .. }), "an id never issued");
        assert!(matches!(start_at(&hub, 5, &outlet, start + 99).await, Start::Reset { .. }), "an id in the future");
    }

    async fn start_at(hub: &Hub, conn: ConnId, outlet: &Arc<Outlet>, since: u64) -> Start {
        start(hub, conn, outlet, Some(since)).await
    }

    #[tokio::test]
    async fn a_gap_older_than_the_buffer_is_a_reset() {
        let hub = hub(2);
        let (outlet, _rx) = Outlet::new(16);
        let Start::Snapshot { id: start } = start(&hub, 1, &outlet, None).await else { panic!() };
        for i in 0..5 {
            publish(&hub, None, &i.to_string());
        }
        assert!(matches!(start_at(&hub, 2, &outlet, start + 1).await, Start::Reset { id } if id == start + 5));
        assert!(
            matches!(start_at(&hub, 3, &outlet, start + 3).await, Start::Replay { events, .. } if events.len() == 2)
        );
        assert_eq!(hub.held("/p", start + 3, start + 4).await.unwrap().len(), 1, "a gap within the buffer is filled");
        assert!(hub.held("/p", start + 1, start + 4).await.is_none(), "one beyond it is not");
    }

    #[tokio::test]
    async fn an_older_version_never_follows_a_newer_one() {
        let hub = hub(8);
        let (outlet, _rx) = Outlet::new(8);
        start(&hub, 1, &outlet, None).await;
        assert_eq!(publish(&hub, Some(2), "2"), Publish::Sent);
        assert_eq!(publish(&hub, Some(1), "1"), Publish::Skipped);
        assert_eq!(publish(&hub, Some(3), "3"), Publish::Sent);
        assert_eq!(hub.version("/p"), Some(3));
    }

    #[tokio::test]
    async fn a_path_subscribed_to_within_the_window_keeps_its_ids() {
        let hub = hub(8);
        let (outlet, _rx) = Outlet::new(8);
        let Start::Snapshot { id: first } = start(&hub, 1, &outlet, None).await else { panic!() };
        publish(&hub, None, "1");
        hub.detach("/p", 1);
        hub.sweep();
        assert!(hub.watches("/p"), "still active for the replay window");
        assert_eq!(publish(&hub, None, "2"), Publish::Sent, "held for a client that comes back");
        let Start::Replay { events, last } = start_at(&hub, 2, &outlet, first).await else { panic!() };
        assert_eq!((events.len(), last), (2, first + 2));
    }
}
