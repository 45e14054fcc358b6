//! The in-process store, without Redis: per active path, the event counter, the last version
//! and a buffer of the latest `REALTIME_REPLAY_EVENTS` events no older than
//! `REALTIME_REPLAY_SECS`.
//!
//! Publishing assigns the id, keeps the event and hands it to the local subscribers under the
//! path's lock here, so ids, the buffer and delivery order agree. Only active paths (see
//! `super::super::topics`) are kept; an event of any other path is skipped unserialised.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Current, Held, Publish, Replay, id_origin};
use crate::realtime::{
    outlet::{Delivery, Frame},
    shards::Shards,
    topics::Topics,
};

/// One active path's counter, last version and held events.
struct Log {
    path: Arc<str>,
    last_id: u64,
    version: Option<i64>,
    events: VecDeque<(Instant, Delivery)>,
}

impl Log {
    fn new(path: Arc<str>) -> Self {
        Self { path, last_id: id_origin() - 1, version: None, events: VecDeque::new() }
    }

    fn trim(&mut self, keep: usize, window: Duration, now: Instant) {
        while self.events.len() > keep || self.events.front().is_some_and(|(at, _)| now.duration_since(*at) > window) {
            self.events.pop_front();
        }
    }
}

/// Ids and held events in this process.
pub struct Memory {
    logs: Shards<Log>,
    topics: Arc<Topics>,
    keep: usize,
    window: Duration,
}

impl Memory {
    /// A store holding `keep` events per path for `window`, delivering to `topics`.
    pub fn new(topics: Arc<Topics>, keep: usize, window: Duration) -> Self {
        Self { logs: Shards::new(), topics, keep, window }
    }
}

impl Replay for Memory {
    fn publish(&self, path: &str, version: Option<i64>, data: &dyn Fn() -> String) -> Publish {
        let mut logs = self.logs.lock(path);
        let Some(key) = self.topics.active(path) else { return Publish::Skipped };
        let log = logs.entry(key).or_insert_with_key(|key| Log::new(key.clone()));
        if let (Some(v), Some(last)) = (version, log.version)
            && v <= last
        {
            return Publish::Skipped;
        }
        if version.is_some() {
            log.version = version;
        }
        log.last_id += 1;
        let frame = Arc::new(Frame::new(log.path.clone(), log.last_id, version, &data()));
        let now = Instant::now();
        log.events.push_back((now, frame.clone()));
        log.trim(self.keep, self.window, now);
        // Still under this path's lock: the next event cannot overtake this one.
        self.topics.deliver(frame);
        Publish::Sent
    }

    fn watches(&self, path: &str) -> bool {
        self.topics.active(path).is_some()
    }

    fn current<'a>(&'a self, path: &'a str) -> Current<'a> {
        let mut logs = self.logs.lock(path);
        let current = match logs.get(path) {
            Some(log) => log.last_id,
            None => logs.entry(Arc::from(path)).or_insert_with_key(|key| Log::new(key.clone())).last_id,
        };
        Box::pin(std::future::ready(Ok(current)))
    }

    fn held<'a>(&'a self, path: &'a str, after: u64, upto: u64) -> Held<'a> {
        let held = if upto <= after {
            Some(Vec::new())
        } else {
            let mut logs = self.logs.lock(path);
            logs.get_mut(path).and_then(|log| {
                log.trim(self.keep, self.window, Instant::now());
                let first = log.events.front()?.1.id;
                (first <= after + 1).then(|| {
                    log.events.iter().filter(|(_, f)| f.id > after && f.id <= upto).map(|(_, f)| f.clone()).collect()
                })
            })
        };
        Box::pin(std::future::ready(Ok(held)))
    }

    /// Drops expired events, and the paths that are no longer active.
    fn sweep(&self) {
        let now = Instant::now();
        for mut logs in self.logs.each() {
            logs.retain(|path, log| {
                log.trim(self.keep, self.window, now);
                self.topics.active(path).is_some()
            });
        }
    }

    fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        Vec::new()
    }
}
