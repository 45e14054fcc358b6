//! This process's subscribers, per path, and the fan-out to them; the same whichever replay
//! store assigns the ids (`super::replay`).
//!
//! - An event reaches every subscriber's bounded queue with `try_send`, under the path's shard
//!   lock, so every subscriber sees the path's events in the order they are delivered, which
//!   is id order. A full queue marks that connection too slow (it is closed); nothing ever
//!   waits on a subscriber.
//! - An id at or below the last one delivered on the path is a duplicate and dropped.
//! - A path is *active* while it has subscribers and for the replay window after the last one
//!   left: the in-process store keeps its ids and events that long, so a client that reconnects
//!   can resume. Events of a path that is not active are dropped without being serialised.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    outlet::{ConnId, Delivery, Outlet},
    shards::Shards,
};

struct Topic {
    path: Arc<str>,
    /// The last id delivered here (0: none yet).
    last_id: u64,
    /// The highest version delivered here.
    version: Option<i64>,
    subs: Vec<(ConnId, Arc<Outlet>)>,
    /// When the last subscriber left.
    idle_since: Option<Instant>,
}

/// Per path, this process's subscribers.
pub struct Topics {
    topics: Shards<Topic>,
    /// How long a path stays active after its last subscriber left.
    linger: Duration,
}

impl Topics {
    pub fn new(linger: Duration) -> Self {
        Self { topics: Shards::new(), linger }
    }

    /// The path's name as this process keeps it, while the path is active.
    pub fn active(&self, path: &str) -> Option<Arc<str>> {
        self.topics.lock(path).get_key_value(path).map(|(key, _)| key.clone())
    }

    /// Adds a subscriber; events delivered from now on reach `outlet`.
    pub fn attach(&self, path: &str, conn: ConnId, outlet: &Arc<Outlet>) {
        let mut shard = self.topics.lock(path);
        let topic = shard.entry(Arc::from(path)).or_insert_with_key(|key| Topic {
            path: key.clone(),
            last_id: 0,
            version: None,
            subs: Vec::new(),
            idle_since: None,
        });
        topic.subs.push((conn, outlet.clone()));
        topic.idle_since = None;
    }

    pub fn detach(&self, path: &str, conn: ConnId) {
        let mut shard = self.topics.lock(path);
        let Some(topic) = shard.get_mut(path) else { return };
        topic.subs.retain(|(c, _)| *c != conn);
        if topic.subs.is_empty() {
            topic.idle_since = Some(Instant::now());
        }
    }

    /// Hands `frame` to the path's subscribers; `false` when the path is not active here or
    /// the frame is not newer than the last one delivered.
    pub fn deliver(&self, frame: Delivery) -> bool {
        let path = frame.path.clone();
        self.deliver_with(&path, frame.id, frame.version, |_| frame)
    }

    /// [`Topics::deliver`] for an event whose frame is only built (by `frame`, given the
    /// path's name) when it is to be delivered: most events heard from other instances are not.
    pub fn deliver_with(
        &self,
        path: &str,
        id: u64,
        version: Option<i64>,
        frame: impl FnOnce(&Arc<str>) -> Delivery,
    ) -> bool {
        let mut shard = self.topics.lock(path);
        let Some(topic) = shard.get_mut(path) else { return false };
        if id <= topic.last_id {
            return false;
        }
        topic.last_id = id;
        if version.is_some() {
            topic.version = version.max(topic.version);
        }
        let frame = frame(&topic.path);
        topic.subs.retain(|(_, outlet)| outlet.offer(&frame));
        true
    }

    /// The highest version delivered on `path`.
    pub fn version(&self, path: &str) -> Option<i64> {
        self.topics.lock(path).get(path).and_then(|t| t.version)
    }

    /// Every path with subscribers here, and the last id delivered on it.
    pub fn heard(&self) -> Vec<(Arc<str>, u64)> {
        let mut out = Vec::new();
        for shard in self.topics.each() {
            out.extend(shard.values().filter(|t| !t.subs.is_empty()).map(|t| (t.path.clone(), t.last_id)));
        }
        out
    }

    /// Subscriptions held here, for the metrics.
    pub fn subscriptions(&self) -> usize {
        self.topics.each().map(|shard| shard.values().map(|t| t.subs.len()).sum::<usize>()).sum()
    }

    /// Forgets closed connections, and paths nobody subscribed to within the linger time.
    pub fn sweep(&self) {
        let now = Instant::now();
        for mut shard in self.topics.each() {
            shard.retain(|_, t| {
                t.subs.retain(|(_, o)| !o.tx.is_closed());
                if t.subs.is_empty() && t.idle_since.is_none() {
                    t.idle_since = Some(now);
                }
                t.idle_since.is_none_or(|since| now.duration_since(since) < self.linger)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::outlet::{CloseReason, Frame};

    fn frame(path: &str, id: u64) -> Delivery {
        Arc::new(Frame::new(Arc::from(path), id, None, &id.to_string()))
    }

    #[test]
    fn a_full_queue_marks_only_that_subscriber_slow() {
        let topics = Topics::new(Duration::from_secs(60));
        let (slow, _slow_rx) = Outlet::new(1);
        let (fast, mut fast_rx) = Outlet::new(8);
        topics.attach("/p", 1, &slow);
        topics.attach("/p", 2, &fast);
        for id in 1..=3 {
            assert!(topics.deliver(frame("/p", id)));
        }
        assert_eq!(slow.killed(), Some(CloseReason::SlowConsumer));
        assert_eq!(fast.killed(), None);
        assert_eq!((0..3).filter(|_| fast_rx.try_recv().is_ok()).count(), 3);
    }

    #[test]
    fn a_duplicate_or_an_inactive_path_is_not_delivered() {
        let topics = Topics::new(Duration::from_secs(60));
        let (outlet, mut rx) = Outlet::new(8);
        assert!(!topics.deliver(frame("/p", 1)), "nobody subscribed");
        topics.attach("/p", 1, &outlet);
        assert!(topics.deliver(frame("/p", 5)));
        assert!(!topics.deliver(frame("/p", 5)));
        assert!(!topics.deliver(frame("/p", 4)));
        assert!(!topics.deliver_with("/p", 5, None, |_| panic!("built for a duplicate")));
        assert_eq!(rx.try_recv().unwrap().id, 5);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_path_stays_active_for_the_linger_time_after_its_last_subscriber() {
        let topics = Topics::new(Duration::from_secs(60));
        let (outlet, _rx) = Outlet::new(8);
        topics.attach("/p", 1, &outlet);
        topics.detach("/p", 1);
        topics.sweep();
        assert!(topics.active("/p").is_some());
        let gone = Topics::new(Duration::ZERO);
        gone.attach("/p", 1, &outlet);
        gone.detach("/p", 1);
        gone.sweep();
        assert!(gone.active("/p").is_none());
    }
}
