//! Where a path's event ids come from and where its recent events are held for resume: one
//! [`Replay`] trait, two stores. Without `REDIS_URL` the process holds them ([`Memory`]); with
//! it Redis does ([`Redis`]), so that every instance agrees. Everything above this module (the
//! hub's resume decision, sessions, transports) is written once, against the trait.

use futures_util::future::BoxFuture;

use super::outlet::Delivery;

mod memory;
mod redis;

pub use memory::Memory;
pub use redis::Redis;

/// What [`Replay::current`] answers.
pub type Current<'a> = BoxFuture<'a, Result<u64, Unavailable>>;

/// What [`Replay::held`] answers.
pub type Held<'a> = BoxFuture<'a, Result<Option<Vec<Delivery>>, Unavailable>>;

/// What became of an event handed to [`Replay::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// It has (or, with Redis, will have) the path's next id.
    Sent,
    /// Lost: the queue to Redis was full.
    Dropped,
    /// Not needed: nobody may be listening, or its version is not newer than the path's.
    Skipped,
}

/// The shared store could not be reached; the subscription is refused (`unavailable`).
#[derive(Debug, thiserror::Error)]
#[error("the realtime store is unavailable: {0}")]
pub struct Unavailable(#[from] ::redis::RedisError);

/// Ids and held events of every path.
///
/// Ids on a path increase by exactly one per event. `current` and `held` together say where a
/// subscription starts (`super::hub::Attached::start`) and fill a gap a connection sees in a
/// live stream.
pub trait Replay: Send + Sync {
    /// Assigns `path`'s next id to an event, holds it, and has it delivered to the subscribers
    /// of every instance. Never blocks. `data` (the serialised event) is only called when the
    /// event is sent. A `version` at or below the path's last one is skipped, so an older
    /// state never follows a newer one.
    fn publish(&self, path: &str, version: Option<i64>, data: &dyn Fn() -> String) -> Publish;

    /// Whether an event on `path` may have a subscriber, here or on another instance.
    fn watches(&self, path: &str) -> bool;

    /// The last id issued on `path`; a path without one gets its counter now, so that its
    /// first event follows a snapshot without a gap.
    fn current<'a>(&'a self, path: &'a str) -> Current<'a>;

    /// The events of `path` after `after` up to `upto`, when every one of them is still held.
    fn held<'a>(&'a self, path: &'a str, after: u64, upto: u64) -> Held<'a>;

    /// Periodic upkeep: forgets what is no longer held.
    fn sweep(&self);

    /// The background tasks the store needs (with Redis, the subscription that feeds this
    /// process's subscribers).
    fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>>;
}

/// Microseconds since the epoch: where a path's ids start, so they keep increasing across
/// restarts and evictions (as long as a path averages under one event per microsecond).
pub fn id_origin() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(1)
}
