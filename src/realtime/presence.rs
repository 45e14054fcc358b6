//! Presence: which members of a grower are online, on `/presence/{growerId}`.
//!
//! Every authenticated connection makes its user online in each grower they are a member of;
//! several connections count once. The first connection publishes `online: true`, closing the
//! last one publishes `online: false`. `lastSeenAt` is written to `user_presence` on both, so
//! it outlives the process.
//!
//! In process, a count per (grower, user). With Redis, each connection is an entry with an
//! expiry in a sorted set per (grower, user), refreshed by its instance every ping interval;
//! an instance that dies stops refreshing and any instance's sweep removes its entries and
//! publishes the offline events (exactly once: the sweep is one Lua script).

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

const KEY_PREFIX: &str = "mash:presence:";
const ALL_KEY: &str = "mash:presence:conns";

fn member_key(grower: Uuid, user: Uuid) -> String {
    format!("{KEY_PREFIX}{grower}:{user}")
}

fn all_member(grower: Uuid, user: Uuid, conn: &str) -> String {
    format!("{grower}|{user}|{conn}")
}

const JOIN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return before
";

const LEAVE: &str = r"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
";

const SWEEP: &str = r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
local out = {}
local seen = {}
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[1], m)
  local g, u, c = string.match(m, '([^|]+)|([^|]+)|(.+)')
  if g then
    local k = ARGV[2] .. g .. ':' .. u
    local s = redis.call('ZSCORE', k, c)
    if s and tonumber(s) <= tonumber(ARGV[1]) then
      redis.call('ZREM', k, c)
      local gu = g .. '|' .. u
      if not seen[gu] and redis.call('ZCOUNT', k, '(' .. ARGV[1], '+inf') == 0 then
        seen[gu] = true
        table.insert(out, gu)
      end
    end
  end
end
return out
";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Presence {
    fn expiry_ms(state: &AppState) -> i64 {
        let c = &state.config.realtime;
        now_ms() + (c.idle_timeout + c.ping_interval).as_millis() as i64
    }

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
            Some(redis) => {
                let script = redis::Script::new(JOIN);
                let expiry = Self::expiry_ms(state);
                let mut conn = redis.conn().await.map_err(unavailable)?;
                for g in &m.growers {
                    let before: i64 = script
                        .key(member_key(*g, user_id))
                        .key(ALL_KEY)
                        .arg(&m.conn)
                        .arg(expiry)
                        .arg(now_ms())
                        .arg(all_member(*g, user_id, &m.conn))
                        .invoke_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    if before == 0 {
                        first_in.push(*g);
                    }
                }
            }
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
            Some(redis) => {
                let script = redis::Script::new(LEAVE);
                let result = async {
                    let mut conn = redis.conn().await?;
                    for g in &m.growers {
                        let last: i64 = script
                            .key(member_key(*g, m.user_id))
                            .key(ALL_KEY)
                            .arg(&m.conn)
                            .arg(now_ms())
                            .arg(all_member(*g, m.user_id, &m.conn))
                            .invoke_async(&mut conn)
                            .await?;
                        if last == 1 {
                            last_in.push(*g);
                        }
                    }
                    redis::RedisResult::Ok(())
                }
                .await;
                if let Err(e) = result {
                    // The entry expires by itself and the sweep publishes the offline event.
                    tracing::warn!(error = %e, "presence: could not record a disconnect in Redis");
                }
            }
        }
        if last_in.is_empty() && !went_offline {
            return;
        }
        for g in last_in {
            publish(state, g, MemberPresence { user_id: m.user_id, online: false, last_seen_at: Some(now) });
        }
        touch(state, m.user_id, now).await;
    }

    /// Redis: renews this instance's entries, then sweeps everyone's expired ones (a dead
    /// instance's) and publishes who went offline. Runs every ping interval.
    pub async fn upkeep(&self, state: &AppState) -> redis::RedisResult<()> {
        let Some(redis) = &state.redis else { return Ok(()) };
        let members: Vec<Member> = self.members.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut conn = redis.conn().await?;
        let expiry = Self::expiry_ms(state);
        let now = state.clock.now();
        for chunk in members.chunks(500) {
            let mut pipe = redis::pipe();
            let mut asked = Vec::new();
            for m in chunk {
                for g in &m.growers {
                    // Answers 1 when the entry was gone: swept while this instance could not
                    // refresh it (and the user was announced offline). Back online, then.
                    pipe.cmd("ZADD").arg(member_key(*g, m.user_id)).arg(expiry).arg(&m.conn);
                    pipe.cmd("ZADD").arg(ALL_KEY).arg(expiry).arg(all_member(*g, m.user_id, &m.conn)).ignore();
                    asked.push((*g, m.user_id, m.conn.as_str()));
                }
            }
            let added: Vec<i64> = pipe.query_async(&mut conn).await?;
            for ((g, u, c), n) in asked.into_iter().zip(added) {
                if n == 0 {
                    continue;
                }
                let open = self.members.lock().unwrap_or_else(|p| p.into_inner()).contains_key(c);
                if open {
                    publish(state, g, MemberPresence { user_id: u, online: true, last_seen_at: Some(now) });
                } else {
                    // It closed while this ran: take back what was just re-added.
                    redis::pipe()
                        .cmd("ZREM")
                        .arg(member_key(g, u))
                        .arg(c)
                        .ignore()
                        .cmd("ZREM")
                        .arg(ALL_KEY)
                        .arg(all_member(g, u, c))
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await?;
                }
            }
        }
        let gone: Vec<String> =
            redis::Script::new(SWEEP).key(ALL_KEY).arg(now_ms()).arg(KEY_PREFIX).invoke_async(&mut conn).await?;
        for entry in gone {
            let Some((g, u)) = entry.split_once('|') else { continue };
            let (Ok(g), Ok(u)) = (g.parse::<Uuid>(), u.parse::<Uuid>()) else { continue };
            touch(state, u, now).await;
            publish(state, g, MemberPresence { user_id: u, online: false, last_seen_at: Some(now) });
        }
        Ok(())
    }

    /// Which of `users` are online in `grower`.
    async fn online(&self, state: &AppState, grower: Uuid, users: &[Uuid]) -> Result<HashSet<Uuid>, AppError> {
        match &state.redis {
            None => {
                let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                Ok(users.iter().copied().filter(|u| counts.contains_key(&(grower, *u))).collect())
            }
            Some(redis) => {
                if users.is_empty() {
                    return Ok(HashSet::new());
                }
                let mut conn = redis.conn().await.map_err(unavailable)?;
                let mut pipe = redis::pipe();
                let floor = format!("({}", now_ms());
                for u in users {
                    pipe.cmd("ZCOUNT").arg(member_key(grower, *u)).arg(&floor).arg("+inf");
                }
                let counts: Vec<i64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
                Ok(users.iter().zip(counts).filter(|(_, n)| *n > 0).map(|(u, _)| *u).collect())
            }
        }
    }
}

fn unavailable(e: redis::RedisError) -> AppError {
    tracing::warn!(error = %e, "presence: Redis unavailable");
    AppError::Unavailable("presence is unavailable right now".into())
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
