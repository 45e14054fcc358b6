//! Presence: which members of a grower are online, on `/presence/{growerId}`.
//!
//! Every authenticated connection makes its user online in each grower they are a member of;
//! several connections count once. The first connection publishes `online: true`, closing the
//! last one publishes `online: false`. `lastSeenAt` is written to `user_presence` on both, so
//! it outlives the process.
//!
//! In process, a count per (grower, user), here. With Redis, each connection is an entry with
//! an expiry in Redis (`redis.rs`), shared by every instance.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::OnConflict};
use serde::Serialize;
use uuid::Uuid;

use super::paths::Snapshot;
use crate::{greenhouse::entity::member, http::AppError, state::AppState};

mod redis;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_presence")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub last_seen_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One member's presence: the snapshot's entries and every event.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberPresence {
    pub user_id: Uuid,
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

pub fn path(grower_id: Uuid) -> String {
    format!("/presence/{grower_id}")
}

/// A connection, as presence knows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Unique across instances.
    pub conn: String,
    pub user_id: Uuid,
    pub growers: Vec<Uuid>,
}

#[derive(Default)]
pub struct Presence {
    /// In process: connections per (grower, user).
    counts: Mutex<HashMap<(Uuid, Uuid), u32>>,
    /// This instance's connections, refreshed in Redis.
    members: Mutex<HashMap<String, Member>>,
}

impl Presence {
    /// A connection of `user_id` opened; publishes `online` in the growers where it is the first.
    pub async fn join(&self, state: &AppState, conn: String, user_id: Uuid) -> Result<Member, AppError> {
        let growers: Vec<Uuid> = member::Entity::find()
            .select_only()
            .column(member::Column::GrowerId)
            .filter(member::Column::UserId.eq(user_id))
            .into_tuple()
            .all(&state.db)
            .await?;
        let m = Member { conn, user_id, growers };
        if m.growers.is_empty() {
            return Ok(m);
        }
        let mut first_in = Vec::new();
        let now = state.clock.now();
        match &state.redis {
            None => {
                // Published under the lock, so a reload's offline (old tab) and online (new
                // tab) go out in the order the counts changed.
                let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                for g in &m.growers {
                    let n = counts.entry((*g, user_id)).or_insert(0);
                    *n += 1;
                    if *n == 1 {
                        publish(state, *g, MemberPresence { user_id, online: true, last_seen_at: Some(now) });
                    }
                }
            }
            Some(redis) => first_in = redis::join(redis, state, &m).await?,
        }
        self.members.lock().unwrap_or_else(|p| p.into_inner()).insert(m.conn.clone(), m.clone());
        for g in &first_in {
            publish(state, *g, MemberPresence { user_id, online: true, last_seen_at: Some(now) });
        }
        touch(state, user_id, now).await;
        Ok(m)
    }

    /// A connection closed; publishes `offline` in the growers where it was the last.
    pub async fn leave(&self, state: &AppState, m: &Member) {
        if m.growers.is_empty() {
            return;
        }
        self.members.lock().unwrap_or_else(|p| p.into_inner()).remove(&m.conn);
        let mut last_in = Vec::new();
        let now = state.clock.now();
        let mut went_offline = false;
        match &state.redis {
            None => {
                let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                for g in &m.growers {
                    if let Some(n) = counts.get_mut(&(*g, m.user_id)) {
                        *n -= 1;
                        if *n == 0 {
                            counts.remove(&(*g, m.user_id));
                            went_offline = true;
                            let p = MemberPresence { user_id: m.user_id, online: false, last_seen_at: Some(now) };
                            publish(state, *g, p);
                        }
                    }
                }
            }
            Some(redis) => last_in = redis::leave(redis, m).await,
        }
        if last_in.is_empty() && !went_offline {
            return;
        }
        for g in last_in {
            publish(state, g, MemberPresence { user_id: m.user_id, online: false, last_seen_at: Some(now) });
        }
        touch(state, m.user_id, now).await;
    }

    /// Which of `users` are online in `grower`.
    async fn online(&self, state: &AppState, grower: Uuid, users: &[Uuid]) -> Result<HashSet<Uuid>, AppError> {
        match &state.redis {
            None => {
                let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                Ok(users.iter().copied().filter(|u| counts.contains_key(&(grower, *u))).collect())
            }
            Some(redis) => redis::online(redis, grower, users).await,
        }
    }
}

fn publish(state: &AppState, grower: Uuid, p: MemberPresence) {
    state.realtime.publish(&path(grower), None, &p);
}

/// Records when `user` was last seen online. Best effort: a failure is logged.
async fn touch(state: &AppState, user_id: Uuid, at: DateTime<Utc>) {
    use sea_orm::ActiveValue::Set;
    let row = entity::ActiveModel { user_id: Set(user_id), last_seen_at: Set(at) };
    let result = entity::Entity::insert(row)
        .on_conflict(OnConflict::column(entity::Column::UserId).update_column(entity::Column::LastSeenAt).to_owned())
        .exec(&state.db)
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, user_id = %user_id, "presence: could not record lastSeenAt");
    }
}

/// `{members:[{userId, online, lastSeenAt}]}` for every member of the grower.
pub async fn snapshot(state: &AppState, grower_id: Uuid) -> Result<Snapshot, AppError> {
    let users: Vec<Uuid> = member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .filter(member::Column::GrowerId.eq(grower_id))
        .order_by_asc(member::Column::CreatedAt)
        .order_by_asc(member::Column::UserId)
        .into_tuple()
        .all(&state.db)
        .await?;
    let seen: HashMap<Uuid, DateTime<Utc>> = entity::Entity::find()
        .filter(entity::Column::UserId.is_in(users.iter().copied()))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p.last_seen_at))
        .collect();
    let online = state.realtime.presence.online(state, grower_id, &users).await?;
    let members: Vec<MemberPresence> = users
        .iter()
        .map(|u| MemberPresence { user_id: *u, online: online.contains(u), last_seen_at: seen.get(u).copied() })
        .collect();
    Ok(Snapshot { data: serde_json::json!({ "members": members }), version: None, changed_at: None })
}
