//! The publishing side over Redis. One Lua script per event assigns the path's next id (`…:n`,
//! a counter), appends the event to the path's replay stream (`…:s`, `XADD` with the id as the
//! entry id, trimmed to `REALTIME_REPLAY_EVENTS` and expiring `REALTIME_REPLAY_SECS` after the
//! last event) and publishes it on [`CHANNEL`], all atomically: ids, the replay buffer and the
//! order in which every instance hears events agree. A versioned path (desired state) also
//! keeps its last version (`…:v`) and drops an older one. The counter and the version expire
//! when the path has been quiet for [`super::keys::ttl`] (see there why that is safe).
//!
//! Writers never wait: events go through a bounded queue to one task per process that sends
//! them in pipelined batches; a full queue drops the event and counts it.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::keys::{self, keys};
use crate::{metrics::Metrics, realtime::replay::id_origin, state};

/// The channel every instance hears every event on.
pub const CHANNEL: &str = "mash:realtime";

const PUBLISH: &str = r"
if ARGV[6] ~= '' then
  local v = redis.call('GET', KEYS[3])
  if v and tonumber(v) >= tonumber(ARGV[6]) then return 0 end
  redis.call('SET', KEYS[3], ARGV[6])
end
local id
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  id = ARGV[1]
else
  id = string.format('%.0f', redis.call('INCR', KEYS[1]))
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id .. '-0', 'd', ARGV[2], 'v', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('PUBLISH', ARGV[5], ARGV[7] .. '\n' .. id .. '\n' .. ARGV[6] .. '\n' .. ARGV[2])
return 1
";

struct Outgoing {
    path: String,
    version: Option<i64>,
    data: String,
}

/// What every event is sent with.
struct Sending {
    redis: Arc<state::Redis>,
    replay_events: usize,
    window: Duration,
    metrics: Arc<Metrics>,
}

/// The queue to the sending task.
pub struct Bus {
    tx: mpsc::Sender<Outgoing>,
}

impl Bus {
    /// Starts the sending task.
    pub fn start(redis: Arc<state::Redis>, replay_events: usize, window: Duration, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(send_loop(Sending { redis, replay_events, window, metrics }, rx));
        Self { tx }
    }

    /// Queues an event; `false` when the queue is full (the event is dropped).
    pub fn send(&self, path: &str, version: Option<i64>, data: String) -> bool {
        self.tx.try_send(Outgoing { path: path.to_string(), version, data }).is_ok()
    }
}

async fn send_loop(sending: Sending, mut rx: mpsc::Receiver<Outgoing>) {
    let script = redis::Script::new(PUBLISH);
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        // A batch is all-or-nothing per event (each is one script), and a script that ran is
        // never run twice: only a batch that failed as a whole (no script, no connection) is
        // retried, a few times with backoff.
        let mut tries = 0;
        loop {
            tries += 1;
            match sending.batch(&script, &batch).await {
                Ok(()) => break,
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) && tries < 3 => {
                    if let Ok(mut conn) = sending.redis.conn().await {
                        let _ = script.prepare_invoke().load_async(&mut conn).await;
                    }
                }
                Err(e) if (e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) && tries < 4 => {
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), "realtime: could not publish to Redis; events dropped");
                    sending.metrics.realtime_events_dropped.inc_by(batch.len() as u64);
                    break;
                }
            }
        }
        batch.clear();
    }
}

impl Sending {
    async fn batch(&self, script: &redis::Script, batch: &[Outgoing]) -> redis::RedisResult<()> {
        let mut conn = self.redis.conn().await?;
        let origin = id_origin();
        let mut pipe = redis::pipe();
        for e in batch {
            let [n, s, v] = keys(&e.path);
            let mut inv = script.prepare_invoke();
            inv.key(n)
                .key(s)
                .key(v)
                .arg(origin)
                .arg(&e.data)
                .arg(self.replay_events)
                .arg(self.window.as_millis() as u64)
                .arg(CHANNEL)
                .arg(e.version.map(|v| v.to_string()).unwrap_or_default())
                .arg(&e.path)
                .arg(keys::ttl(self.window).as_millis() as u64);
            pipe.invoke_script(&inv).ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }
}
