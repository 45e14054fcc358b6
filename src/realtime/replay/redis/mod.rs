//! The store shared by every instance, with `REDIS_URL`: ids and replay streams live in Redis
//! (written by [`bus`]), and each instance subscribes once to [`bus::CHANNEL`] and hands what
//! it hears to its own subscribers, in the order Redis assigned.
//!
//! When the subscription is (re)made, events published while it was down are read back from
//! the replay streams. One lost in a still-running subscription shows as a gap in ids at the
//! next event, which the connection fills from the stream the same way (or resets).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use super::{Current, Held, Publish, Replay};
use crate::{
    config::Secret,
    metrics::Metrics,
    realtime::{
        outlet::{Delivery, Frame},
        topics::Topics,
    },
    state,
};

mod bus;
mod keys;

use keys::keys;

/// Ids and held events in Redis, shared by every instance.
pub struct Redis {
    url: Secret,
    /// The connection for reads and for the publishing task.
    redis: Arc<state::Redis>,
    /// Started on the first event, from within the runtime.
    bus: OnceLock<bus::Bus>,
    topics: Arc<Topics>,
    replay_events: usize,
    window: Duration,
    metrics: Arc<Metrics>,
}

impl Redis {
    /// A store on the Redis at `url` (already parsed at startup), delivering what it hears to
    /// `topics`; its streams hold `replay_events` events for `window`.
    pub fn new(
        url: &Secret,
        topics: Arc<Topics>,
        replay_events: usize,
        window: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let redis = state::Redis::new(url.expose()).expect("REDIS_URL was parsed at startup");
        Self { url: url.clone(), redis: Arc::new(redis), bus: OnceLock::new(), topics, replay_events, window, metrics }
    }
}

impl Replay for Redis {
    /// Queues the event for the sending task: the id is assigned in Redis, and the event
    /// reaches this process's subscribers through the subscription, like every other instance's.
    fn publish(&self, path: &str, version: Option<i64>, data: &dyn Fn() -> String) -> Publish {
        let bus = self
            .bus
            .get_or_init(|| bus::Bus::start(self.redis.clone(), self.replay_events, self.window, self.metrics.clone()));
        if bus.send(path, version, data()) { Publish::Sent } else { Publish::Dropped }
    }

    /// Always: a subscriber may be on another instance.
    fn watches(&self, _path: &str) -> bool {
        true
    }

    fn current<'a>(&'a self, path: &'a str) -> Current<'a> {
        Box::pin(async move { Ok(keys::current(&self.redis, path, keys::ttl(self.window)).await?) })
    }

    fn held<'a>(&'a self, path: &'a str, after: u64, upto: u64) -> Held<'a> {
        Box::pin(async move { Ok(held(&self.redis, path, after, upto).await?) })
    }

    /// Redis trims and expires the streams itself.
    fn sweep(&self) {}

    fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let (topics, redis) = (self.topics.clone(), self.redis.clone());
        let heard = move |heard: crate::pubsub::Heard<'_>| match heard {
            crate::pubsub::Heard::Message(payload) => on_message(&topics, payload),
            crate::pubsub::Heard::Subscribed => {
                let (topics, redis) = (topics.clone(), redis.clone());
                tokio::spawn(async move {
                    if let Err(e) = catch_up(&redis, &topics).await {
                        tracing::warn!(error = %e, "realtime: could not catch up from Redis");
                    }
                });
            }
        };
        let renewing = keys::renewing(self.redis.clone(), self.topics.clone(), keys::ttl(self.window));
        vec![crate::pubsub::subscribe(self.url.clone(), bus::CHANNEL, heard), renewing]
    }
}

/// Hands an event heard on the channel to this process's subscribers.
fn on_message(topics: &Topics, payload: &str) {
    let mut parts = payload.splitn(4, '\n');
    let (Some(path), Some(id), Some(version), Some(data)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Ok(id) = id.parse::<u64>() else { return };
    let version = version.parse().ok();
    topics.deliver_with(path, id, version, |path| Arc::new(Frame::new(path.clone(), id, version, data)));
}

/// After the subscription was (re)made: delivers what every local path missed meanwhile, from
/// the replay streams. A path whose missed events are no longer held is left to the next
/// event's gap check (which resets its subscribers).
async fn catch_up(redis: &state::Redis, topics: &Topics) -> redis::RedisResult<()> {
    for (path, last) in topics.heard() {
        if last == 0 {
            continue;
        }
        let [n, _, _] = keys(&path);
        let mut conn = redis.conn().await?;
        let current: Option<u64> = redis::cmd("GET").arg(n).query_async(&mut conn).await?;
        let Some(current) = current.filter(|c| *c > last) else { continue };
        for frame in held(redis, &path, last, current).await?.unwrap_or_default() {
            topics.deliver(frame);
        }
    }
    Ok(())
}

/// The events of `path` after `after` up to `upto`, when the stream still holds every one.
async fn held(redis: &state::Redis, path: &str, after: u64, upto: u64) -> redis::RedisResult<Option<Vec<Delivery>>> {
    if upto <= after {
        return Ok(Some(Vec::new()));
    }
    let mut conn = redis.conn().await?;
    let [_, s, _] = keys(path);
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(s)
        .arg(format!("{}-0", after + 1))
        .arg(format!("{upto}-0"))
        .query_async(&mut conn)
        .await?;
    let path: Arc<str> = Arc::from(path);
    let mut out = Vec::with_capacity(entries.len());
    for (expected, (entry_id, fields)) in (after + 1..).zip(entries) {
        let id = entry_id.split('-').next().and_then(|n| n.parse::<u64>().ok());
        if id != Some(expected) {
            return Ok(None);
        }
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let version = field("v").and_then(|v| v.parse().ok());
        out.push(Arc::new(Frame::new(path.clone(), expected, version, field("d").unwrap_or("null"))));
    }
    Ok((out.len() as u64 == upto - after).then_some(out))
}
