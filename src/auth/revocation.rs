//! The set of revoked sessions, checked on every authenticated request without a database
//! round trip.
//!
//! - Filled *before* a revocation is acknowledged (logout, session delete, password change,
//!   disable, refresh-token reuse), so the very next request on this instance is refused.
//! - Entries live one access-token lifetime (plus margin): after that, every access token of the
//!   session has expired on its own and refresh is refused by the database.
//! - Loaded from `sessions.revoked_at` at start, so it is correct after a restart.
//! - With Redis, every revocation is published and every instance adds it at once; a periodic
//!   re-read of the database backs that up if a message is ever missed.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::entity::session;

pub const CHANNEL: &str = "mash:auth:revoked-sessions";

pub struct Revocations {
    revoked: moka::sync::Cache<Uuid, ()>,
    window: Duration,
    /// Newly revoked sessions, for the realtime connections to close.
    newly: tokio::sync::broadcast::Sender<Arc<[Uuid]>>,
}

impl Revocations {
    pub fn new(access_ttl: Duration) -> Arc<Self> {
        let window = access_ttl + Duration::from_secs(60);
        let revoked = moka::sync::Cache::builder().max_capacity(5_000_000).time_to_live(window).build();
        Arc::new(Self { revoked, window, newly: tokio::sync::broadcast::channel(1024).0 })
    }

    pub fn is_revoked(&self, session_id: &Uuid) -> bool {
        self.revoked.contains_key(session_id)
    }

    /// Marks sessions revoked in this process, and tells [`watch`](Self::watch)ers about the
    /// ones that were not yet.
    pub fn insert_local(&self, session_ids: &[Uuid]) {
        let new: Vec<Uuid> = session_ids.iter().copied().filter(|id| !self.revoked.contains_key(id)).collect();
        for id in session_ids {
            self.revoked.insert(*id, ());
        }
        if !new.is_empty() {
            let _ = self.newly.send(new.into());
        }
    }

    /// Sessions as they get revoked (a receiver that lags is told so, and should re-check
    /// what it holds with [`is_revoked`](Self::is_revoked)).
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<Arc<[Uuid]>> {
        self.newly.subscribe()
    }

    /// Re-reads sessions revoked since `since` (all that can still have live access tokens when
    /// `since` is `None`). Returns the time to use for the next incremental read.
    pub async fn sync_from_db(
        &self,
        db: &DatabaseConnection,
        since: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, sea_orm::DbErr> {
        let now = Utc::now();
        let floor = now - chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::hours(1));
        // Overlap a little with the last read: a row committed late with an earlier timestamp
        // must not slip between two reads.
        let from = since.map(|s| s - chrono::Duration::seconds(30)).map_or(floor, |s| s.max(floor));
        let ids: Vec<Uuid> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::RevokedAt.gte(from))
            .into_tuple()
            .all(db)
            .await?;
        self.insert_local(&ids);
        Ok(now)
    }
}

/// Publishes revocations to the other instances (best effort: the periodic database read is
/// the safety net when Redis is unreachable).
pub async fn publish(redis: &crate::state::Redis, session_ids: &[Uuid]) {
    if let Ok(payload) = serde_json::to_string(session_ids) {
        crate::pubsub::publish(redis, CHANNEL, &payload).await;
    }
}

/// Background work: the periodic database sync, and the Redis subscription when configured.
pub fn spawn_background(state: &crate::state::AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let revocations = state.auth.revocations.clone();
    let db = state.db.clone();
    let every = state.config.auth.revocation_sync;
    tasks.push(tokio::spawn(async move {
        let mut since = Some(Utc::now());
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match revocations.sync_from_db(&db, since).await {
                Ok(next) => since = Some(next),
                Err(e) => tracing::warn!(error = %e, "revocation sync from the database failed"),
            }
        }
    }));
    if let Some(url) = state.config.redis_url.clone() {
        let revocations = state.auth.revocations.clone();
        // Revocations missed while unsubscribed are caught by the periodic database sync.
        tasks.push(crate::pubsub::subscribe(url, CHANNEL, move |heard| {
            if let crate::pubsub::Heard::Message(payload) = heard
                && let Ok(ids) = serde_json::from_str::<Vec<Uuid>>(payload)
            {
                revocations.insert_local(&ids);
            }
        }));
    }
    tasks
}
