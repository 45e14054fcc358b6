//! The catalogue cache: serialized product pages and list pages, in process (moka).
//!
//! Every entry is keyed by the catalogue *generation* it was read under. A write (product,
//! category, or stock taken or returned by an order) commits, then bumps the generation before
//! it answers, so:
//! - a read that starts after a write's response looks up the new generation and misses;
//! - a read that fetched old rows before the write stores them under the old generation, where
//!   no later read looks (a plain "invalidate, then a slow reader re-inserts stale data" race
//!   cannot happen).
//!
//! With Redis, each bump is published and every instance bumps its own generation; the TTL
//! bounds how long a lost message could leave another instance stale.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use moka::sync::Cache;

pub const CHANNEL: &str = "mash:shop:catalogue";

pub struct CatalogueCache {
    generation: AtomicU64,
    entries: Cache<(u64, String), Bytes>,
    /// Identifies this process's own messages on the Redis channel.
    instance: uuid::Uuid,
    /// `CATALOGUE_CACHE_ENTRIES=0` turns caching off (every read goes to the database).
    enabled: bool,
}

impl CatalogueCache {
    pub fn new(capacity: u64, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            generation: AtomicU64::new(0),
            entries: Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
            instance: uuid::Uuid::now_v7(),
            enabled: capacity > 0,
        })
    }

    /// The generation to read under: take it *before* reading the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, generation: u64, key: &str) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        self.entries.get(&(generation, key.to_string()))
    }

    pub fn put(&self, generation: u64, key: String, body: Bytes) {
        // Only when no write happened meanwhile; otherwise the entry is unreachable anyway.
        if self.enabled && generation == self.generation() {
            self.entries.insert((generation, key), body);
        }
    }

    /// Makes every cached entry unreachable on this instance (and frees them).
    pub fn invalidate_local(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    /// After a committed catalogue write: invalidates here at once, and on other instances
    /// through Redis (best effort; the TTL is the backstop).
    pub async fn invalidate(&self, redis: Option<&crate::state::Redis>) {
        self.invalidate_local();
        if let Some(redis) = redis {
            crate::pubsub::publish(redis, CHANNEL, &self.instance.to_string()).await;
        }
    }

    /// A message from the channel: another instance wrote.
    pub fn on_message(&self, payload: &str) {
        if payload != self.instance.to_string() {
            self.invalidate_local();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_reader_cannot_repopulate() {
        let cache = CatalogueCache::new(100, Duration::from_secs(60));
        let g = cache.generation();
        cache.put(g, "p1".into(), Bytes::from_static(b"old"));
        assert_eq!(cache.get(g, "p1").as_deref(), Some(&b"old"[..]));

        // A reader takes the generation and reads old rows; a write commits and invalidates.
        let reader_gen = cache.generation();
        cache.invalidate_local();
        cache.put(reader_gen, "p1".into(), Bytes::from_static(b"old"));
        let now = cache.generation();
        assert_ne!(now, reader_gen);
        assert!(cache.get(now, "p1").is_none(), "the stale read is not visible");

        cache.on_message(&cache.instance.to_string());
        assert_eq!(cache.generation(), now, "own messages are ignored");
        cache.on_message("another-instance");
        assert_eq!(cache.generation(), now + 1);
    }
}
