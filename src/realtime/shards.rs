//! A map from path to per-path state, split over a fixed number of locks, so that publishing on
//! one path never waits for another. Everything that keeps state per path uses it.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard},
};

const SHARDS: usize = 32;

/// The paths of one shard.
type Paths<V> = HashMap<Arc<str>, V>;

/// The paths of one shard, under its lock.
pub type Shard<'a, V> = MutexGuard<'a, Paths<V>>;

/// Per-path state of type `V`, under `SHARDS` locks.
pub struct Shards<V> {
    shards: Box<[Mutex<Paths<V>>]>,
    hasher: RandomState,
}

impl<V> Shards<V> {
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    /// The shard holding `path`, locked. A poisoned lock is taken as is: every update under it
    /// leaves the map consistent.
    pub fn lock(&self, path: &str) -> Shard<'_, V> {
        let i = (self.hasher.hash_one(path) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every shard in turn, each locked while it is visited.
    pub fn each(&self) -> impl Iterator<Item = Shard<'_, V>> {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
