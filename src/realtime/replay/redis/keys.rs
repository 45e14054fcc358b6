//! A path's keys in Redis and how long they live: its counter (`…:n`), replay stream (`…:s`)
//! and last version (`…:v`). The stream expires with the replay window; the counter and the
//! version when the path has been quiet for [`ttl`], which is safe (see there).

use std::{sync::Arc, time::Duration};

use crate::{
    realtime::{replay::id_origin, topics::Topics},
    state,
};

/// A path's counter, replay stream and last version. The braces are a hash tag: a path's keys
/// stay on one Redis Cluster slot.
pub fn keys(path: &str) -> [String; 3] {
    [format!("mash:rt:{{{path}}}:n"), format!("mash:rt:{{{path}}}:s"), format!("mash:rt:{{{path}}}:v")]
}

/// Makes sure the path's counter exists (so the first event follows the snapshot's id without a
/// gap) and returns it; the path is in use: its counter and version expire [`ttl`] from now.
const CURRENT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('GET', KEYS[1])
";

/// How long a path's counter (`…:n`) and last version (`…:v`) outlive its last use: an event,
/// a subscription, or (renewed every quarter of it by [`renew`]) a subscriber held on any
/// instance. A day, or twice the replay window when that is longer, so they always outlive the
/// replay stream and the in-process store's linger.
///
/// Safe because nothing a client holds can meet a recreated counter as anything but a reset:
/// - a counter is (re)created at [`id_origin`], the time in microseconds, so after a day of
///   quiet it starts above every id the old one issued (ids stay below the time as long as a
///   path averages under one event per microsecond, and a day dwarfs any clock skew). A
///   resume from an old id then asks for events the new counter never had: `reset` and a
///   snapshot, as after a Redis restart, or in process once the path was forgotten;
/// - the version only stops an older state that is published after a newer one, and an event
///   reaches Redis within minutes of its commit or is dropped (writers publish right after
///   committing; the queue to Redis is bounded and gives up on a batch after a few retries):
///   an older state can no longer arrive a day after the newer one, when `…:v` has expired.
pub fn ttl(window: Duration) -> Duration {
    (2 * window).max(Duration::from_secs(24 * 3600))
}

/// The last id issued on `path`, making its counter if it has none (see [`CURRENT`]).
pub async fn current(redis: &state::Redis, path: &str, ttl: Duration) -> redis::RedisResult<u64> {
    let mut conn = redis.conn().await?;
    let [n, _, v] = keys(path);
    let ttl = ttl.as_millis() as u64;
    redis::Script::new(CURRENT).key(n).key(v).arg(id_origin() - 1).arg(ttl).invoke_async(&mut conn).await
}

/// The task that runs [`renew`] every quarter of `ttl`.
pub fn renewing(redis: Arc<state::Redis>, topics: Arc<Topics>, ttl: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = renew(&redis, &topics, ttl).await {
                tracing::warn!(error = %e, "realtime: could not renew the ids of subscribed paths in Redis");
            }
        }
    })
}

/// Keeps the counter and version of every path subscribed to here for another `ttl`: however
/// long a path stays quiet, its subscribers' next event follows their last id.
async fn renew(redis: &state::Redis, topics: &Topics, ttl: Duration) -> redis::RedisResult<()> {
    let mut conn = redis.conn().await?;
    let ttl = ttl.as_millis() as u64;
    for chunk in topics.heard().chunks(500) {
        let mut pipe = redis::pipe();
        for (path, _) in chunk {
            let [n, _, v] = keys(path);
            pipe.cmd("PEXPIRE").arg(n).arg(ttl).ignore();
            pipe.cmd("PEXPIRE").arg(v).arg(ttl).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::outlet::Outlet;

    /// On the Redis the integration tests use.
    #[tokio::test]
    async fn renewing_keeps_the_counter_and_version_of_subscribed_paths_only() {
        let url = std::env::var("MASH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let redis = state::Redis::new(&url).unwrap();
        let mut conn = redis.conn().await.unwrap();
        let topics = Topics::new(Duration::from_secs(60));
        let (watched, quiet) = (format!("/test/{}", uuid::Uuid::now_v7()), format!("/test/{}", uuid::Uuid::now_v7()));
        let (outlet, _rx) = Outlet::new(8);
        topics.attach(&watched, 1, &outlet);
        let short = Duration::from_secs(10);
        for path in [&watched, &quiet] {
            current(&redis, path, short).await.unwrap();
            let _: () = redis::cmd("SET")
                .arg(&keys(path)[2])
                .arg(1)
                .arg("PX")
                .arg(10_000)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        renew(&redis, &topics, Duration::from_secs(1000)).await.unwrap();
        for (path, renewed) in [(&watched, true), (&quiet, false)] {
            let [n, _, v] = keys(path);
            for key in [n, v] {
                let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
                assert_eq!(ttl > 10_000, renewed, "{key}: {ttl} ms");
                let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
            }
        }
    }
}
