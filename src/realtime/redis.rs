//! Realtime across instances, over Redis.
//!
//! One Lua script per event assigns the path's next id (`…:n`, a counter), appends the event to
//! the path's replay stream (`…:s`, `XADD` with the id as the entry id, trimmed to
//! `REALTIME_REPLAY_EVENTS` and expiring `REALTIME_REPLAY_SECS` after the last event) and
//! publishes it on [`CHANNEL`], all atomically: ids, the replay buffer and the order in which
//! every instance hears events agree. A versioned path (desired state) also keeps its last
//! version (`…:v`) and drops an older one.
//!
//! Writers never wait: events go through a bounded queue to one task per process that sends
//! them in pipelined batches; a full queue drops the event and counts it.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::hub::{Delivery, Frame, Hub, id_origin};
use crate::state::Redis;

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
redis.call('PUBLISH', ARGV[5], ARGV[7] .. '\n' .. id .. '\n' .. ARGV[6] .. '\n' .. ARGV[2])
return 1
";

/// Makes sure the path's counter exists (so the first event follows the snapshot's id without a
/// gap) and returns it.
const CURRENT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

fn keys(path: &str) -> [String; 3] {
    // The braces are a hash tag: a path's keys stay on one Redis Cluster slot.
    [format!("mash:rt:{{{path}}}:n"), format!("mash:rt:{{{path}}}:s"), format!("mash:rt:{{{path}}}:v")]
}

struct Outgoing {
    path: String,
    version: Option<i64>,
    data: String,
}

/// The sending side, owned by the realtime state.
pub struct Bus {
    tx: mpsc::Sender<Outgoing>,
}

impl Bus {
    /// Starts the sending task.
    pub fn start(
        redis: Redis,
        replay_events: usize,
        replay_window: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(16_384);
        let task = tokio::spawn(send_loop(redis, rx, replay_events, replay_window, metrics));
        (Self { tx }, task)
    }

    /// Queues an event; `false` when the queue is full (the event is dropped).
    pub fn send(&self, path: &str, version: Option<i64>, data: String) -> bool {
        self.tx.try_send(Outgoing { path: path.to_string(), version, data }).is_ok()
    }
}

async fn send_loop(
    redis: Redis,
    mut rx: mpsc::Receiver<Outgoing>,
    replay_events: usize,
    window: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let script = redis::Script::new(PUBLISH);
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        // A batch is all-or-nothing per event (each is one script), and a script that ran is
        // never run twice: only a batch that failed as a whole (no script, no connection) is
        // retried, a few times with backoff.
        let mut tries = 0;
        loop {
            tries += 1;
            match send_batch(&redis, &script, &batch, replay_events, window).await {
                Ok(()) => break,
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) && tries < 3 => {
                    if let Ok(mut conn) = redis.conn().await {
                        let _ = script.prepare_invoke().load_async(&mut conn).await;
                    }
                }
                Err(e) if (e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) && tries < 4 => {
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), "realtime: could not publish to Redis; events dropped");
                    metrics.realtime_events_dropped.inc_by(batch.len() as u64);
                    break;
                }
            }
        }
        batch.clear();
    }
}

async fn send_batch(
    redis: &Redis,
    script: &redis::Script,
    batch: &[Outgoing],
    replay_events: usize,
    window: Duration,
) -> redis::RedisResult<()> {
    let mut conn = redis.conn().await?;
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
            .arg(replay_events)
            .arg(window.as_millis() as u64)
            .arg(CHANNEL)
            .arg(e.version.map(|v| v.to_string()).unwrap_or_default())
            .arg(&e.path);
        pipe.invoke_script(&inv).ignore();
    }
    pipe.query_async::<()>(&mut conn).await
}

/// Hands what the subscription hears to the local hub.
pub fn on_message(hub: &Hub, payload: &str) {
    let mut parts = payload.splitn(4, '\n');
    let (Some(path), Some(id), Some(version), Some(data)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Ok(id) = id.parse::<u64>() else { return };
    hub.deliver_remote(path, id, version.parse().ok(), data);
}

/// After the subscription was (re)made: delivers what every local path missed meanwhile, from
/// the replay streams. A path whose missed events are no longer held is left to the next
/// event's gap check (which resets its subscribers).
pub async fn catch_up(redis: &Redis, hub: &Hub) -> redis::RedisResult<()> {
    for (path, last) in hub.topics() {
        if last == 0 {
            continue;
        }
        let [n, _, _] = keys(&path);
        let mut conn = redis.conn().await?;
        let current: Option<u64> = redis::cmd("GET").arg(n).query_async(&mut conn).await?;
        let Some(current) = current.filter(|c| *c > last) else { continue };
        if let Some(frames) = held(redis, &path, last, current).await? {
            for frame in frames {
                hub.deliver_frame(frame);
            }
        }
    }
    Ok(())
}

/// The path's current id (creating the counter if the path never had an event).
pub async fn current(redis: &Redis, path: &str) -> redis::RedisResult<u64> {
    let mut conn = redis.conn().await?;
    let [n, _, _] = keys(path);
    redis::Script::new(CURRENT).key(n).arg(id_origin() - 1).invoke_async(&mut conn).await
}

/// The events of `path` after `after` up to `upto`, when Redis still holds every one of them.
pub async fn held(redis: &Redis, path: &str, after: u64, upto: u64) -> redis::RedisResult<Option<Vec<Delivery>>> {
    if upto <= after {
        return Ok(Some(Vec::new()));
    }
    let mut conn = redis.conn().await?;
    let [_, s, _] = keys(path);
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(s)
        .arg(format!("{}-0", after + 1))
        .arg(format!("{upto}-0"))
        .query_async(&mut conn)
        .await?;
    let path: Arc<str> = Arc::from(path);
    let mut out = Vec::with_capacity(entries.len());
    for (expected, (entry_id, fields)) in (after + 1..).zip(entries) {
        let id = entry_id.split('-').next().and_then(|n| n.parse::<u64>().ok());
        if id != Some(expected) {
            return Ok(None);
        }
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let version = field("v").and_then(|v| v.parse().ok());
        out.push(Arc::new(Frame::new(path.clone(), expected, version, field("d").unwrap_or("null"))));
    }
    Ok((out.len() as u64 == upto - after).then_some(out))
}
