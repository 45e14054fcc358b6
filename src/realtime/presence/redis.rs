//! Presence with Redis, shared by every instance: each connection is an entry with an expiry
//! in a sorted set per (grower, user), refreshed by its instance every ping interval; an
//! instance that dies stops refreshing and any instance's sweep removes its entries and
//! publishes the offline events (exactly once: the sweep is one Lua script).

use std::collections::HashSet;

use chrono::Utc;
use uuid::Uuid;

use super::{Member, MemberPresence, Presence, publish, touch};
use crate::{http::AppError, state::AppState};

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

/// When an entry refreshed now expires.
fn expiry_ms(state: &AppState) -> i64 {
    let c = &state.config.realtime;
    now_ms() + (c.idle_timeout + c.ping_interval).as_millis() as i64
}

fn unavailable(e: redis::RedisError) -> AppError {
    tracing::warn!(error = %e, "presence: Redis unavailable");
    AppError::Unavailable("presence is unavailable right now".into())
}

/// Adds connection `m`; returns the growers where it is its user's first.
pub async fn join(redis: &crate::state::Redis, state: &AppState, m: &Member) -> Result<Vec<Uuid>, AppError> {
    let script = redis::Script::new(JOIN);
    let expiry = expiry_ms(state);
    let mut conn = redis.conn().await.map_err(unavailable)?;
    let mut first_in = Vec::new();
    for g in &m.growers {
        let before: i64 = script
            .key(member_key(*g, m.user_id))
            .key(ALL_KEY)
            .arg(&m.conn)
            .arg(expiry)
            .arg(now_ms())
            .arg(all_member(*g, m.user_id, &m.conn))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if before == 0 {
            first_in.push(*g);
        }
    }
    Ok(first_in)
}

/// Removes connection `m`; returns the growers where it was its user's last.
pub async fn leave(redis: &crate::state::Redis, m: &Member) -> Vec<Uuid> {
    let script = redis::Script::new(LEAVE);
    let mut last_in = Vec::new();
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
    last_in
}

/// Which of `users` have a live entry in `grower`.
pub async fn online(redis: &crate::state::Redis, grower: Uuid, users: &[Uuid]) -> Result<HashSet<Uuid>, AppError> {
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

impl Presence {
    /// Redis: renews this instance's entries, then sweeps everyone's expired ones (a dead
    /// instance's) and publishes who went offline. Runs every ping interval.
    pub async fn upkeep(&self, state: &AppState) -> redis::RedisResult<()> {
        let Some(redis) = &state.redis else { return Ok(()) };
        let members: Vec<Member> = self.members.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut conn = redis.conn().await?;
        let expiry = expiry_ms(state);
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
}
