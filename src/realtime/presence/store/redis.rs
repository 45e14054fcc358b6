//! Presence in Redis, shared by every instance: each connection is an entry with an expiry in
//! a sorted set per (grower, user), and in one index of every entry (`mash:presence:conns`).
//! Its instance refreshes it every ping interval; an instance that dies stops refreshing, and
//! any instance's upkeep removes its entries and reports its users offline (exactly once: the
//! sweep is one Lua script).

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use chrono::Utc;
use futures_util::future::{BoxFuture, FutureExt};
use redis::{RedisResult, Script};

use super::{Change, Changed, Member, PresenceError, PresenceStore};
use crate::{
    config::Secret,
    ids::{GrowerId, UserId},
    state,
};

const KEY_PREFIX: &str = "mash:presence:";
const INDEX: &str = "mash:presence:conns";

/// Adds (JOIN) or removes (LEAVE) a connection's entry, dropping expired ones; answers 1 when
/// the set went from empty to one entry (JOIN) or back (LEAVE). KEYS: the (grower, user) set,
/// the index. ARGV: the connection, its index entry, now, the expiry (JOIN).
const JOIN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
if before == 0 then return 1 end
return 0
";

const LEAVE: &str = r"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
";

/// Removes the expired entries of the index and of their sets; answers `grower|user` for each
/// set left without a live entry.
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

/// One connection in one grower.
struct Entry<'a> {
    grower: GrowerId,
    user: UserId,
    conn: &'a str,
}

impl Entry<'_> {
    /// The sorted set of the (grower, user) connections.
    fn key(&self) -> String {
        set_key(self.grower, self.user)
    }

    /// Its member in the index.
    fn indexed(&self) -> String {
        format!("{}|{}|{}", self.grower, self.user, self.conn)
    }
}

fn set_key(grower: GrowerId, user: UserId) -> String {
    format!("{KEY_PREFIX}{grower}:{user}")
}

fn entries(m: &Member) -> impl Iterator<Item = Entry<'_>> {
    m.growers.iter().map(|g| Entry { grower: *g, user: m.user_id, conn: &m.conn })
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Presence in Redis.
pub struct Redis {
    redis: state::Redis,
    /// This instance's open connections, refreshed by [`PresenceStore::upkeep`].
    members: Mutex<HashMap<String, Member>>,
    /// How long an entry lives without a refresh: the idle timeout plus a ping interval.
    ttl: Duration,
}

impl Redis {
    /// Presence on the Redis at `url` (already parsed at startup); entries expire after `ttl`.
    pub fn new(url: &Secret, ttl: Duration) -> Self {
        let redis = state::Redis::new(url.expose()).expect("REDIS_URL was parsed at startup");
        Self { redis, members: Mutex::new(HashMap::new()), ttl }
    }

    fn members(&self) -> MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When an entry refreshed now expires.
    fn expiry_ms(&self) -> i64 {
        now_ms() + self.ttl.as_millis() as i64
    }

    /// Runs JOIN or LEAVE for each of `m`'s growers; `changed` gets those where it answered 1.
    async fn each_grower(&self, script: &str, m: &Member, changed: Changed<'_>) -> RedisResult<()> {
        let script = Script::new(script);
        let mut conn = self.redis.conn().await?;
        for e in entries(m) {
            let answer: i64 = script
                .key(e.key())
                .key(INDEX)
                .arg(e.conn)
                .arg(e.indexed())
                .arg(now_ms())
                .arg(self.expiry_ms())
                .invoke_async(&mut conn)
                .await?;
            if answer == 1 {
                changed(e.grower);
            }
        }
        Ok(())
    }

    /// Renews the entries of this instance's connections; answers those that were gone (swept
    /// while this instance could not refresh them, and announced offline): back online.
    async fn renew(&self, conn: &mut redis::aio::ConnectionManager) -> RedisResult<Vec<Change>> {
        let members: Vec<Member> = self.members().values().cloned().collect();
        let expiry = self.expiry_ms();
        let mut back = Vec::new();
        for chunk in members.chunks(500) {
            let mut pipe = redis::pipe();
            let asked: Vec<Entry<'_>> = chunk.iter().flat_map(entries).collect();
            for e in &asked {
                // Answers 1 when the entry was not there.
                pipe.cmd("ZADD").arg(e.key()).arg(expiry).arg(e.conn);
                pipe.cmd("ZADD").arg(INDEX).arg(expiry).arg(e.indexed()).ignore();
            }
            let added: Vec<i64> = pipe.query_async(conn).await?;
            for (e, n) in asked.into_iter().zip(added) {
                if n == 0 {
                    continue;
                }
                if self.members().contains_key(e.conn) {
                    back.push(Change { grower: e.grower, user: e.user, online: true });
                } else {
                    // It closed while this ran: take back what was just re-added.
                    let mut pipe = redis::pipe();
                    pipe.cmd("ZREM").arg(e.key()).arg(e.conn).ignore();
                    pipe.cmd("ZREM").arg(INDEX).arg(e.indexed()).ignore();
                    pipe.query_async::<()>(conn).await?;
                }
            }
        }
        Ok(back)
    }
}

impl PresenceStore for Redis {
    fn join<'a>(&'a self, m: &'a Member, first: Changed<'a>) -> BoxFuture<'a, Result<(), PresenceError>> {
        async move {
            self.each_grower(JOIN, m, first).await?;
            self.members().insert(m.conn.clone(), m.clone());
            Ok(())
        }
        .boxed()
    }

    fn leave<'a>(&'a self, m: &'a Member, last: Changed<'a>) -> BoxFuture<'a, ()> {
        async move {
            self.members().remove(&m.conn);
            if let Err(e) = self.each_grower(LEAVE, m, last).await {
                // The entry expires by itself and the sweep reports the user offline.
                tracing::warn!(error = %e, "presence: could not record a disconnect in Redis");
            }
        }
        .boxed()
    }

    fn online<'a>(
        &'a self,
        grower: GrowerId,
        users: &'a [UserId],
    ) -> BoxFuture<'a, Result<HashSet<UserId>, PresenceError>> {
        async move {
            if users.is_empty() {
                return Ok(HashSet::new());
            }
            let mut conn = self.redis.conn().await?;
            let mut pipe = redis::pipe();
            let floor = format!("({}", now_ms());
            for u in users {
                pipe.cmd("ZCOUNT").arg(set_key(grower, *u)).arg(&floor).arg("+inf");
            }
            let counts: Vec<i64> = pipe.query_async(&mut conn).await?;
            Ok(users.iter().zip(counts).filter(|(_, n)| *n > 0).map(|(u, _)| *u).collect())
        }
        .boxed()
    }

    /// Renews this instance's entries, then sweeps everyone's expired ones (a dead instance's).
    fn upkeep(&self) -> BoxFuture<'_, Result<Vec<Change>, PresenceError>> {
        async move {
            let mut conn = self.redis.conn().await?;
            let mut changes = self.renew(&mut conn).await?;
            let gone: Vec<String> =
                Script::new(SWEEP).key(INDEX).arg(now_ms()).arg(KEY_PREFIX).invoke_async(&mut conn).await?;
            changes.extend(gone.iter().filter_map(|entry| {
                let (g, u) = entry.split_once('|')?;
                Some(Change { grower: GrowerId(g.parse().ok()?), user: UserId(u.parse().ok()?), online: false })
            }));
            Ok(changes)
        }
        .boxed()
    }
}
