//! The hub: per path, the event counter, the replay buffer and this process's subscribers.
//!
//! - Publishing assigns the path's next id, keeps the event for resume and hands it to every
//!   subscriber's bounded queue with `try_send`, under the path's shard lock, so every
//!   subscriber sees the path's events in id order. A full queue marks that connection too
//!   slow (it is closed); nothing ever waits on a subscriber.
//! - A path nobody subscribed to within the replay window has no topic, and its events are
//!   dropped on the spot without even being serialised.
//! - With Redis, ids and the replay buffer live in Redis (`super::redis`); this hub then only
//!   fans out what the Redis subscription hears, in the order Redis assigned.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

/// One event, serialised once for all subscribers.
#[derive(Debug)]
pub struct Frame {
    pub path: Arc<str>,
    pub id: u64,
    /// For paths whose data carries a version (desired state): never decreases.
    pub version: Option<i64>,
    /// The whole message: `{"type":"event","path":…,"id":"…","data":…}`.
    pub text: Utf8Bytes,
}

impl Frame {
    /// Builds the message from already-serialised `data`.
    pub fn new(path: Arc<str>, id: u64, version: Option<i64>, data: &str) -> Self {
        let text = format!(
            r#"{{"type":"event","path":{},"id":"{id}","data":{data}}}"#,
            serde_json::Value::String(path.to_string())
        );
        Self { path, id, version, text: text.into() }
    }
}

pub type Delivery = Arc<Frame>;

/// Why the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    Revoked,
    Shutdown,
}

/// A connection as the hub sees it: where its events go, and how to stop it.
pub struct Outlet {
    pub tx: mpsc::Sender<Delivery>,
    reason: OnceLock<CloseReason>,
    notify: Notify,
}

impl Outlet {
    pub fn new(queue: usize) -> (Arc<Self>, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(queue);
        (Arc::new(Self { tx, reason: OnceLock::new(), notify: Notify::new() }), rx)
    }

    /// Asks the connection to close; the first reason wins.
    pub fn kill(&self, reason: CloseReason) {
        if self.reason.set(reason).is_ok() {
            self.notify.notify_one();
        }
    }

    pub fn killed(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Resolves once the connection is asked to close.
    pub async fn wait_killed(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.killed() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

pub type ConnId = u64;

struct Topic {
    path: Arc<str>,
    last_id: u64,
    version: Option<i64>,
    buffer: VecDeque<(Instant, Delivery)>,
    subs: Vec<(ConnId, Arc<Outlet>)>,
    /// When the last subscriber left.
    idle_since: Option<Instant>,
}

impl Topic {
    fn new(path: Arc<str>, last_id: u64) -> Self {
        Self { path, last_id, version: None, buffer: VecDeque::new(), subs: Vec::new(), idle_since: None }
    }

    fn fan_out(&mut self, frame: &Delivery) {
        self.subs.retain(|(_, outlet)| match outlet.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                outlet.kill(CloseReason::SlowConsumer);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Takes event `id` (assigned by Redis) as the latest; `false` for one already seen.
    fn advance(&mut self, id: u64, version: Option<i64>) -> bool {
        if id <= self.last_id {
            return false;
        }
        self.last_id = id;
        if version.is_some() {
            self.version = version.max(self.version);
        }
        true
    }

    fn trim(&mut self, keep: usize, window: Duration, now: Instant) {
        while self.buffer.len() > keep || self.buffer.front().is_some_and(|(at, _)| now.duration_since(*at) > window) {
            self.buffer.pop_front();
        }
    }
}

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
    /// Ids live in Redis: the caller asks it (`super::redis`).
    Remote,
}

/// Microseconds since the epoch: where a path's ids start, so they keep increasing across
/// restarts and evictions (as long as a path averages under one event per microsecond).
pub fn id_origin() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(1)
}

/// A slice of the paths, under one lock.
type Shard = Mutex<HashMap<Arc<str>, Topic>>;

pub struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
    replay_events: usize,
    replay_window: Duration,
    /// Ids and replay come from Redis.
    remote: bool,
}

const SHARDS: usize = 32;

impl Hub {
    pub fn new(replay_events: usize, replay_window: Duration, remote: bool) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            replay_events,
            replay_window,
            remote,
        }
    }

    fn shard(&self, path: &str) -> MutexGuard<'_, HashMap<Arc<str>, Topic>> {
        let i = (self.hasher.hash_one(path) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether anyone here subscribes to `path` (or did within the replay window).
    pub fn is_active(&self, path: &str) -> bool {
        self.shard(path).contains_key(path)
    }

    /// In-process publishing: assigns the id, keeps the event, fans it out. `data` is only
    /// called when the path is active. A `version` at or below the path's last one is dropped,
    /// so an older state never follows a newer one.
    pub fn publish_local(&self, path: &str, version: Option<i64>, data: impl FnOnce() -> String) -> Option<u64> {
        let mut shard = self.shard(path);
        let topic = shard.get_mut(path)?;
        if let (Some(v), Some(last)) = (version, topic.version)
            && v <= last
        {
            return None;
        }
        if version.is_some() {
            topic.version = version;
        }
        topic.last_id += 1;
        let frame = Arc::new(Frame::new(topic.path.clone(), topic.last_id, version, &data()));
        let now = Instant::now();
        topic.buffer.push_back((now, frame.clone()));
        topic.trim(self.replay_events, self.replay_window, now);
        topic.fan_out(&frame);
        Some(frame.id)
    }

    /// Fans out an event whose id Redis assigned. An id at or below the last one seen here is
    /// a duplicate and dropped.
    pub fn deliver_remote(&self, path: &str, id: u64, version: Option<i64>, data: &str) {
        let mut shard = self.shard(path);
        let Some(topic) = shard.get_mut(path) else { return };
        if topic.advance(id, version) {
            let frame = Arc::new(Frame::new(topic.path.clone(), id, version, data));
            topic.fan_out(&frame);
        }
    }

    /// Fans out a frame read back from Redis (a gap filled after the subscription dropped).
    pub fn deliver_frame(&self, frame: Delivery) {
        let mut shard = self.shard(&frame.path);
        let Some(topic) = shard.get_mut(&*frame.path) else { return };
        if topic.advance(frame.id, frame.version) {
            topic.fan_out(&frame);
        }
    }

    /// Every path with subscribers here, and the last id heard on it.
    pub fn topics(&self) -> Vec<(Arc<str>, u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.values().filter(|t| !t.subs.is_empty()).map(|t| (t.path.clone(), t.last_id)));
        }
        out
    }

    /// Adds a subscriber to `path` and says where it starts. Live events reach `outlet` from
    /// this moment on, so nothing falls between the start and the live stream.
    pub fn attach(&self, path: &str, conn: ConnId, outlet: &Arc<Outlet>, since: Option<u64>) -> Start {
        let mut shard = self.shard(path);
        let now = Instant::now();
        let start = if self.remote { 0 } else { id_origin() - 1 };
        let topic = shard.entry(Arc::from(path)).or_insert_with_key(|key| Topic::new(key.clone(), start));
        topic.subs.push((conn, outlet.clone()));
        topic.idle_since = None;
        if self.remote {
            return Start::Remote;
        }
        topic.trim(self.replay_events, self.replay_window, now);
        let current = topic.last_id;
        let Some(since) = since else { return Start::Snapshot { id: current } };
        if since == current {
            return Start::Replay { events: Vec::new(), last: current };
        }
        let held_from = topic.buffer.front().map(|(_, f)| f.id);
        if since < current && held_from.is_some_and(|first| first <= since + 1) {
            let events = topic.buffer.iter().filter(|(_, f)| f.id > since).map(|(_, f)| f.clone()).collect();
            return Start::Replay { events, last: current };
        }
        Start::Reset { id: current }
    }

    /// The held events after `after` up to `upto`, when all of them are still held.
    pub fn held(&self, path: &str, after: u64, upto: u64) -> Option<Vec<Delivery>> {
        let shard = self.shard(path);
        let topic = shard.get(path)?;
        let first = topic.buffer.front()?.1.id;
        (first <= after + 1).then(|| {
            topic.buffer.iter().filter(|(_, f)| f.id > after && f.id <= upto).map(|(_, f)| f.clone()).collect()
        })
    }

    /// The last version published (or, with Redis, heard) on `path`.
    pub fn version(&self, path: &str) -> Option<i64> {
        self.shard(path).get(path).and_then(|t| t.version)
    }

    pub fn detach(&self, path: &str, conn: ConnId) {
        let mut shard = self.shard(path);
        let Some(topic) = shard.get_mut(path) else { return };
        topic.subs.retain(|(c, _)| *c != conn);
        if topic.subs.is_empty() {
            if self.remote {
                shard.remove(path);
            } else {
                topic.idle_since = Some(Instant::now());
            }
        }
    }

    /// Drops topics nobody subscribed to within the replay window, and expired events.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut live = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, t| {
                t.trim(self.replay_events, self.replay_window, now);
                t.subs.retain(|(_, o)| !o.tx.is_closed());
                if t.subs.is_empty() && t.idle_since.is_none() {
                    t.idle_since = Some(now);
                }
                t.idle_since.is_none_or(|since| now.duration_since(since) < self.replay_window)
            });
            live += shard.len();
        }
        live
    }

    /// Paths with subscribers here (for the Redis subscriber's gap checks and metrics).
    pub fn subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).values().map(|t| t.subs.len()).sum::<usize>())
            .sum()
    }

    /// Asks every connection subscribed here to close (shutdown).
    pub fn kill_all(&self, reason: CloseReason) {
        for shard in self.shards.iter() {
            for t in shard.lock().unwrap_or_else(|p| p.into_inner()).values() {
                for (_, o) in &t.subs {
                    o.kill(reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(keep: usize) -> Hub {
        Hub::new(keep, Duration::from_secs(60), false)
    }

    #[test]
    fn an_inactive_path_drops_events_without_serialising_them() {
        let hub = hub(8);
        assert_eq!(hub.publish_local("/p", None, || panic!("serialised for nobody")), None);
    }

    #[test]
    fn ids_are_consecutive_and_resume_replays_exactly_the_missed_events() {
        let hub = hub(8);
        let (outlet, mut rx) = Outlet::new(16);
        let Start::Snapshot { id: start } = hub.attach("/p", 1, &outlet, None) else { panic!() };
        let ids: Vec<u64> = (0..3).map(|i| hub.publish_local("/p", None, || i.to_string()).unwrap()).collect();
        assert_eq!(ids, vec![start + 1, start + 2, start + 3]);
        assert_eq!(rx.try_recv().unwrap().id, start + 1);
        hub.detach("/p", 1);
        let Start::Replay { events, last } = hub.attach("/p", 2, &outlet, Some(start + 1)) else { panic!() };
        assert_eq!(events.iter().map(|f| f.id).collect::<Vec<_>>(), vec![start + 2, start + 3]);
        assert_eq!(last, start + 3);
        assert!(
            matches!(hub.attach("/p", 3, &outlet, Some(start + 3)), Start::Replay { events, .. } if events.is_empty())
        );
        assert!(matches!(hub.attach("/p", 4, &outlet, Some(7)), Start::Reset { .. }), "an id never issued");
        assert!(matches!(hub.attach("/p", 5, &outlet, Some(start + 99)), Start::Reset { .. }), "an id in the future");
    }

    #[test]
    fn a_gap_older_than_the_buffer_is_a_reset() {
        let hub = hub(2);
        let (outlet, _rx) = Outlet::new(16);
        let Start::Snapshot { id: start } = hub.attach("/p", 1, &outlet, None) else { panic!() };
        for i in 0..5 {
            hub.publish_local("/p", None, || i.to_string());
        }
        assert!(matches!(hub.attach("/p", 2, &outlet, Some(start + 1)), Start::Reset { id } if id == start + 5));
        assert!(
            matches!(hub.attach("/p", 3, &outlet, Some(start + 3)), Start::Replay { events, .. } if events.len() == 2)
        );
    }

    #[test]
    fn a_full_queue_marks_only_that_subscriber_slow() {
        let hub = hub(8);
        let (slow, _slow_rx) = Outlet::new(1);
        let (fast, mut fast_rx) = Outlet::new(8);
        hub.attach("/p", 1, &slow, None);
        hub.attach("/p", 2, &fast, None);
        for i in 0..3 {
            hub.publish_local("/p", None, || i.to_string());
        }
        assert_eq!(slow.killed(), Some(CloseReason::SlowConsumer));
        assert_eq!(fast.killed(), None);
        assert_eq!((0..3).filter(|_| fast_rx.try_recv().is_ok()).count(), 3);
    }

    #[test]
    fn an_older_version_never_follows_a_newer_one() {
        let hub = hub(8);
        let (outlet, _rx) = Outlet::new(8);
        hub.attach("/p", 1, &outlet, None);
        assert!(hub.publish_local("/p", Some(2), || "2".into()).is_some());
        assert!(hub.publish_local("/p", Some(1), || "1".into()).is_none());
        assert!(hub.publish_local("/p", Some(3), || "3".into()).is_some());
    }

    #[test]
    fn event_text_is_the_contract_message() {
        let f = Frame::new(Arc::from("/alerts/x"), 7, None, r#"{"a":1}"#);
        let v: serde_json::Value = serde_json::from_str(&f.text).unwrap();
        assert_eq!(v, serde_json::json!({"type":"event","path":"/alerts/x","id":"7","data":{"a":1}}));
    }
}
