//! Presence: which members of a grower are online, on `/presence/{growerId}`.
//!
//! Every authenticated connection makes its user online in each grower they are a member of;
//! several connections (on any instance) count once. The first connection publishes
//! `online: true`, closing the last one publishes `online: false`; a dead connection is closed
//! after the idle timeout and counts as closed. `lastSeenAt` is written to `user_presence` on
//! both, so it outlives the process.
//!
//! Where connections are counted is one [`PresenceStore`] chosen at start (`store/`: in
//! process, or in Redis with `REDIS_URL`); the rules above are written once, here.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, Ordering},
};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::OnConflict};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    config::{RealtimeConfig, Secret},
    greenhouse::entity::member,
    ids::{GrowerId, UserId},
    state::AppState,
};

pub mod entity;
mod error;
mod snapshot;
mod store;

pub use error::PresenceError;
pub use snapshot::snapshot;
use store::PresenceStore;

/// One member's presence: the snapshot's entries and every event.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberPresence {
    pub user_id: UserId,
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

pub fn path(grower: GrowerId) -> String {
    format!("/presence/{grower}")
}

/// A connection, as presence knows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Unique across instances.
    pub conn: String,
    pub user_id: UserId,
    /// The growers its user belonged to when it opened.
    pub growers: Vec<GrowerId>,
}

/// Presence, over the store chosen at start.
pub struct Presence {
    store: Box<dyn PresenceStore>,
}

impl Presence {
    /// Presence for this configuration: in Redis when `redis_url` is set, where a connection
    /// not refreshed within the idle timeout and a ping interval expires.
    pub fn new(config: &RealtimeConfig, redis_url: Option<&Secret>) -> Self {
        let store: Box<dyn PresenceStore> = match redis_url {
            Some(url) => Box::new(store::Redis::new(url, config.idle_timeout + config.ping_interval)),
            None => Box::new(store::Memory::default()),
        };
        Self { store }
    }

    /// A connection of `user_id` opened; publishes `online` in the growers where it is the first.
    pub async fn join(&self, state: &AppState, conn: String, user_id: UserId) -> Result<Member, PresenceError> {
        let growers: Vec<Uuid> = member::Entity::find()
            .select_only()
            .column(member::Column::GrowerId)
            .filter(member::Column::UserId.eq(user_id))
            .into_tuple()
            .all(&state.db)
            .await?;
        let m = Member { conn, user_id, growers: growers.into_iter().map(Into::into).collect() };
        if m.growers.is_empty() {
            return Ok(m);
        }
        let now = state.clock.now();
        self.store.join(&m, &|g| publish(state, g, user_id, true, now)).await?;
        touch(state, user_id, now).await;
        Ok(m)
    }

    /// A connection closed; publishes `offline` in the growers where it was the last.
    pub async fn leave(&self, state: &AppState, m: &Member) {
        if m.growers.is_empty() {
            return;
        }
        let now = state.clock.now();
        let went_offline = AtomicBool::new(false);
        let last = |g| {
            went_offline.store(true, Ordering::Relaxed);
            publish(state, g, m.user_id, false, now);
        };
        self.store.leave(m, &last).await;
        if went_offline.into_inner() {
            touch(state, m.user_id, now).await;
        }
    }

    /// Which of `users` are online in `grower`.
    async fn online(&self, grower: GrowerId, users: &[UserId]) -> Result<HashSet<UserId>, PresenceError> {
        self.store.online(grower, users).await
    }

    /// Every ping interval: the store's upkeep (with Redis, renewing this instance's
    /// connections and sweeping a dead instance's), publishing what changed.
    pub async fn upkeep(&self, state: &AppState) -> Result<(), PresenceError> {
        let changes = self.store.upkeep().await?;
        let now = state.clock.now();
        for c in changes {
            if !c.online {
                touch(state, c.user, now).await;
            }
            publish(state, c.grower, c.user, c.online, now);
        }
        Ok(())
    }
}

fn publish(state: &AppState, grower: GrowerId, user_id: UserId, online: bool, at: DateTime<Utc>) {
    let p = MemberPresence { user_id, online, last_seen_at: Some(at) };
    state.realtime.publish(&path(grower), None, &p);
}

/// Records when `user` was last seen online. Best effort: a failure is logged.
async fn touch(state: &AppState, user_id: UserId, at: DateTime<Utc>) {
    use sea_orm::ActiveValue::Set;
    let row = entity::ActiveModel { user_id: Set(user_id.into()), last_seen_at: Set(at) };
    let result = entity::Entity::insert(row)
        .on_conflict(OnConflict::column(entity::Column::UserId).update_column(entity::Column::LastSeenAt).to_owned())
        .exec(&state.db)
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, user_id = %user_id, "presence: could not record lastSeenAt");
    }
}
