//! Where presence is counted: one [`PresenceStore`] trait, two stores, chosen once at start
//! (`super::Presence::new`). Without `REDIS_URL` the process counts connections per (grower,
//! user) ([`Memory`]); with it each connection is an entry with an expiry in Redis ([`Redis`]),
//! so every instance agrees. What a change publishes and records is decided above, once.

use std::collections::HashSet;

use futures_util::future::BoxFuture;

use super::{Member, PresenceError};
use crate::ids::{GrowerId, UserId};

mod memory;
mod redis;

pub use memory::Memory;
pub use redis::Redis;

/// Called with each grower where a user's presence changed, at the moment the store changed
/// it (in process, under its lock: so a reload's offline of the old tab and online of the new
/// one go out in the order the counts changed).
pub type Changed<'a> = &'a (dyn Fn(GrowerId) + Sync);

/// A change found by [`PresenceStore::upkeep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub grower: GrowerId,
    pub user: UserId,
    pub online: bool,
}

/// Open connections per (grower, user). A user is online in a grower while any of their
/// connections is counted there.
pub trait PresenceStore: Send + Sync {
    /// Counts connection `m` in each of its growers; `first` gets those where it is its user's
    /// first.
    fn join<'a>(&'a self, m: &'a Member, first: Changed<'a>) -> BoxFuture<'a, Result<(), PresenceError>>;

    /// Stops counting `m`; `last` gets the growers where it was its user's last. Never fails:
    /// what a shared store could not be told expires there, and its upkeep announces it.
    fn leave<'a>(&'a self, m: &'a Member, last: Changed<'a>) -> BoxFuture<'a, ()>;

    /// Which of `users` are online in `grower`.
    fn online<'a>(
        &'a self,
        grower: GrowerId,
        users: &'a [UserId],
    ) -> BoxFuture<'a, Result<HashSet<UserId>, PresenceError>>;

    /// Every ping interval: keeps this instance's connections alive in a shared store, and
    /// returns what changed meanwhile (another instance died: its users go offline; this one's
    /// entries were swept while it could not refresh them: back online).
    fn upkeep(&self) -> BoxFuture<'_, Result<Vec<Change>, PresenceError>>;
}
