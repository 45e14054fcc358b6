//! Load generator for the realtime WebSocket endpoint (used by `bench/scenarios/90_realtime.sh`).
//!
//! ```text
//! realtime_load idle URL TOKEN PATH N HOLD_SECS
//! realtime_load latency URL[,URL2] TOKEN DEVICE_ID DEVICE_TOKEN SUBSCRIBERS EVENTS INTERVAL_MS
//! realtime_load fanout URL[,URL2] TOKEN DEVICE_ID[,…] POST_TOKEN SUBSCRIBERS SECONDS POSTERS WINDOW
//! realtime_load redis-fanout REDIS_URL SUBSCRIBERS SECONDS PUBLISHERS WINDOW PAYLOAD_BYTES
//! realtime_load bare-server PORT SECONDS
//! realtime_load bare-fanout URL PATHS SUBSCRIBERS SECONDS PUBLISHERS WINDOW PAYLOAD_BYTES
//! ```
//!
//! Connections are opened `RT_OPEN_CONCURRENCY` (200) at a time; each is
//! `GET /api/v1/realtime?access_token=TOKEN`, one `subscribe`, and counts as open once its
//! `snapshot` arrived. Every connection is read all the time, so server pings are answered.
//!
//! - `idle`: N connections subscribed to PATH. Prints `{"phase":"open",…}` once every one is
//!   open (or failed), then a `{"phase":"hold",…}` line every 2 s (how many are still open, close
//!   reasons) until HOLD_SECS have passed or the process is killed.
//! - `latency`: SUBSCRIBERS connections to `/live/sensors/DEVICE_ID`, round-robin over the URLs.
//!   Then EVENTS telemetry batches of one reading (value = the batch's number, unique `ts`), one
//!   every INTERVAL_MS, posted to the first URL as the device; each batch's 202 instant is noted,
//!   and every subscriber notes when the event with that value arrived. Latency = receipt − 202
//!   (0 when the event beat the response, counted as `early`). Also checks that each
//!   subscriber's event ids are consecutive.
//! - `fanout`: SUBSCRIBERS connections, each subscribed to the live path of every listed device;
//!   POSTERS tasks post batches of one reading per device (as the device with its token when
//!   there is one device, else with POST_TOKEN as a Bearer token) as fast as the subscribers keep
//!   up: a batch is posted only while every open subscriber is at most WINDOW messages behind (so
//!   nobody is cut off as a slow consumer), for SECONDS. Subscribers only count event messages.
//!   events_per_sec = messages received by all subscribers ÷ time from the first post to the
//!   last receipt; `poster_window_wait_share` tells whether the posters (ingestion) or the window
//!   (delivery) set the pace.
//! - `bare-server` / `bare-fanout`: the limit for `fanout`: the same subscribers (PATHS
//!   subscriptions each), posters and window rule against a WebSocket broadcaster with no
//!   application logic (`bare-server`, its own process); each publisher connection sends a
//!   PAYLOAD_BYTES-byte message to be broadcast once per path and waits for its `ack` (where
//!   `fanout` waits for a 202), and the server writes the copies to every subscriber.
//! - `redis-fanout`: SUBSCRIBERS Redis pub/sub connections on one channel, PUBLISHERS tasks
//!   publishing PAYLOAD_BYTES-byte messages under the same WINDOW rule, for SECONDS; messages/s
//!   counted the same way (for information: its client library's cost is in the figure).
//!
//! Every mode prints JSON lines on stdout (the last one is the result) and exits by itself.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::Semaphore};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const USAGE: &str = "usage:
  realtime_load idle URL TOKEN PATH N HOLD_SECS
  realtime_load latency URL[,URL2] TOKEN DEVICE_ID DEVICE_TOKEN SUBSCRIBERS EVENTS INTERVAL_MS
  realtime_load fanout URL[,URL2] TOKEN DEVICE_ID[,…] POST_TOKEN SUBSCRIBERS SECONDS POSTERS WINDOW
  realtime_load redis-fanout REDIS_URL SUBSCRIBERS SECONDS PUBLISHERS WINDOW PAYLOAD_BYTES
  realtime_load bare-server PORT SECONDS
  realtime_load bare-fanout URL PATHS SUBSCRIBERS SECONDS PUBLISHERS WINDOW PAYLOAD_BYTES";

/// How long one connection may take to open and get its snapshot.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

fn open_concurrency() -> usize {
    std::env::var("RT_OPEN_CONCURRENCY").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(200)
}

fn ws_url(base: &str, token: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{base}/api/v1/realtime?access_token={token}")
}

/// An event id: a decimal string (as documented), or a number.
fn event_id(v: &Value) -> Option<u64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64())
}

/// Opens one connection, subscribes to each of `paths` and waits for their snapshots; returns
/// the socket and the first path's snapshot id.
async fn subscribe(url: &str, paths: &[String]) -> anyhow::Result<(Ws, Option<u64>)> {
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    // A small read buffer: the client holds thousands of sockets (tungstenite's default is 128 KiB).
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut ws, _) = tokio::time::timeout_at(deadline, connect_async_with_config(url, Some(config), true))
        .await
        .context("WebSocket handshake timed out")?
        .context("WebSocket handshake")?;
    for path in paths {
        ws.feed(Message::text(json!({"type": "subscribe", "path": path}).to_string())).await.context("subscribe")?;
    }
    ws.flush().await.context("subscribe")?;
    let mut waiting = paths.len();
    let mut first_id = None;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.context("no snapshot in time")?;
        match msg {
            None => anyhow::bail!("closed before the snapshot"),
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("before the snapshot")),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).with_context(|| format!("not JSON: {t}"))?;
                match v["type"].as_str() {
                    Some("snapshot") if paths.iter().any(|p| v["path"] == p.as_str()) => {
                        if v["path"] == paths[0].as_str() {
                            first_id = event_id(&v["id"]);
                        }
                        waiting -= 1;
                        if waiting == 0 {
                            return Ok((ws, first_id));
                        }
                    }
                    Some("error" | "auth_expired") => anyhow::bail!("refused: {t}"),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed before the snapshot: {frame:?}"),
            Some(Ok(_)) => {}
        }
    }
}

/// A WebSocket close as text: "4008 slow consumer", "eof", or the error.
fn close_reason(msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> String {
    match msg {
        Some(Ok(Message::Close(Some(f)))) => format!("{} {}", u16::from(f.code), f.reason),
        Some(Ok(Message::Close(None))) => "close without code".into(),
        Some(Err(e)) => format!("error: {e}"),
        _ => "eof".into(),
    }
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    first_error: Mutex<Option<String>>,
    close_reasons: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn fail(&self, e: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert_with(|| format!("{e:#}"));
    }
    fn close(&self, reason: String) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        *self.close_reasons.lock().unwrap().entry(reason).or_default() += 1;
    }
    fn reasons(&self) -> Value {
        json!(*self.close_reasons.lock().unwrap())
    }
    fn first_error(&self) -> Value {
        json!(*self.first_error.lock().unwrap())
    }
}

// ---------------------------------------------------------------------------------------------
// idle
// ---------------------------------------------------------------------------------------------

async fn idle(args: &[String]) -> anyhow::Result<()> {
    let [url, token, path, n, hold] = args else { anyhow::bail!(USAGE) };
    let n: u64 = n.parse()?;
    let hold = Duration::from_secs_f64(hold.parse()?);
    let url = ws_url(url, token);
    let counters = Arc::new(Counters::default());
    let messages = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(open_concurrency()));
    let started = Instant::now();
    for _ in 0..n {
        let (url, path, counters, sem, messages) =
            (url.clone(), path.clone(), counters.clone(), sem.clone(), messages.clone());
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let opened = subscribe(&url, std::slice::from_ref(&path)).await;
            drop(permit);
            let mut ws = match opened {
                Ok((ws, _)) => ws,
                Err(e) => return counters.fail(&e),
            };
            counters.opened.fetch_add(1, Ordering::Relaxed);
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(_))) => {
                        messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {}
                    other => return counters.close(close_reason(other)),
                }
            }
        });
    }
    let deadline = started + Duration::from_secs(600);
    while counters.opened.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    let status = |phase: &str| {
        let opened = counters.opened.load(Ordering::Relaxed);
        let closed = counters.closed.load(Ordering::Relaxed);
        json!({
            "phase": phase,
            "connections_open": opened - closed,
            "opened": opened,
            "failed": counters.failed.load(Ordering::Relaxed),
            "closed": closed,
            "close_reasons": counters.reasons(),
            "messages": messages.load(Ordering::Relaxed),
            "open_seconds": open_secs,
            "elapsed_seconds": started.elapsed().as_secs_f64(),
            "first_error": counters.first_error(),
        })
    };
    println!("{}", status("open"));
    let hold_until = Instant::now() + hold;
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(2).min(hold_until.saturating_duration_since(Instant::now()))).await;
        println!("{}", status("hold"));
    }
    println!("{}", status("done"));
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// latency and fanout: subscribers of one device's live path, batches posted as the device
// ---------------------------------------------------------------------------------------------

struct Shared {
    t0: Instant,
    /// Messages received by all subscribers, and the latest receipt (ns since t0).
    received: AtomicU64,
    last_recv_ns: AtomicU64,
    /// Byte length of the first event message seen (for the Redis reference payload).
    message_bytes: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Counts one event message of `bytes` received at `now` by the subscriber `sub`.
    fn received_one(&self, sub: &SubState, now: u64, bytes: usize) {
        sub.count.fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_recv_ns.fetch_max(now, Ordering::Relaxed);
        if self.message_bytes.load(Ordering::Relaxed) == 0 {
            self.message_bytes.store(bytes as u64, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct SubStats {
    opened: bool,
    /// Which of the URLs this subscriber used.
    instance: usize,
    /// Receipt time (ns since t0, 0 = never) per batch number; latency mode only.
    recv: Vec<u64>,
    events: u64,
    gaps: u64,
    duplicates: u64,
    resets: u64,
    other: u64,
    close: Option<String>,
}

struct SubState {
    count: AtomicU64,
    closed: AtomicBool,
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    instance: usize,
    url: String,
    paths: Vec<String>,
    record: usize,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    state: Arc<SubState>,
    sem: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> SubStats {
    let mut st = SubStats { instance, ..SubStats::default() };
    let permit = sem.acquire_owned().await;
    let opened = subscribe(&url, &paths).await;
    drop(permit);
    let (mut ws, mut last_id) = match opened {
        Ok(x) => x,
        Err(e) => {
            counters.fail(&e);
            state.closed.store(true, Ordering::Relaxed);
            return st;
        }
    };
    st.opened = true;
    st.recv = vec![0; record];
    counters.opened.fetch_add(1, Ordering::Relaxed);
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let now = shared.now_ns();
                if record == 0 {
                    // Counting only (fanout): no JSON parsing on this side.
                    if t.as_str().contains(r#""event""#) {
                        st.events += 1;
                        shared.received_one(&state, now, t.len());
                    } else {
                        st.other += 1;
                    }
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    st.other += 1;
                    continue;
                };
                match v["type"].as_str() {
                    Some("event") if v["path"] == paths[0].as_str() => {
                        if let Some(id) = event_id(&v["id"]) {
                            match last_id {
                                Some(last) if id <= last => st.duplicates += 1,
                                Some(last) if id != last + 1 => st.gaps += 1,
                                _ => {}
                            }
                            last_id = Some(id.max(last_id.unwrap_or(0)));
                        }
                        if let Some(readings) = v["data"]["readings"].as_array() {
                            for r in readings {
                                if let Some(k) = r["value"].as_f64().map(|x| x as usize)
                                    && k < st.recv.len()
                                    && st.recv[k] == 0
                                {
                                    st.recv[k] = now.max(1);
                                }
                            }
                        }
                        st.events += 1;
                        shared.received_one(&state, now, t.len());
                    }
                    Some("reset") => st.resets += 1,
                    _ => st.other += 1,
                }
            }
            Some(Ok(Message::Close(frame))) => {
                st.close = Some(close_reason(Some(Ok(Message::Close(frame)))));
                break;
            }
            Some(Ok(_)) => {}
            other @ (Some(Err(_)) | None) => {
                st.close = Some(close_reason(other));
                break;
            }
        }
    }
    if let Some(reason) = &st.close {
        state.closed.store(true, Ordering::Relaxed);
        counters.close(reason.clone());
    }
    st
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Smallest event count among the subscribers still open (u64::MAX when none is).
fn min_count(states: &[Arc<SubState>]) -> u64 {
    states
        .iter()
        .filter(|s| !s.closed.load(Ordering::Relaxed))
        .map(|s| s.count.load(Ordering::Relaxed))
        .min()
        .unwrap_or(u64::MAX)
}

struct Delivery {
    latency: bool,
    urls: Vec<String>,
    /// Every subscriber subscribes to each device's live path; every batch has one reading per
    /// device (latency mode: one device).
    devices: Vec<String>,
    /// `Device <token>`, or `Bearer <token>` for a person allowed to write for every device.
    post_auth: String,
    subscribers: usize,
    /// Latency: number of batches and the pace. Fanout: a time limit, posters and window.
    events: u64,
    interval: Option<Duration>,
    seconds: f64,
    posters: usize,
    window: Option<u64>,
    /// `bare-fanout`: publish PAYLOAD_BYTES-byte messages through `bare-server` instead of
    /// posting telemetry to mash.
    bare: Option<usize>,
}

async fn delivery(d: Delivery, token: &str) -> anyhow::Result<()> {
    let paths: Vec<String> = d.devices.iter().map(|dev| format!("/live/sensors/{dev}")).collect();
    // Event messages each subscriber gets per batch.
    let per_batch = d.devices.len().max(1) as u64;
    let record = if d.latency { d.events as usize } else { 0 };
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        received: AtomicU64::new(0),
        last_recv_ns: AtomicU64::new(0),
        message_bytes: AtomicU64::new(0),
    });
    let counters = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(open_concurrency()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ws_urls: Vec<String> = d.urls.iter().map(|u| ws_url(u, token)).collect();
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..d.subscribers {
        let state = Arc::new(SubState { count: AtomicU64::new(0), closed: AtomicBool::new(false) });
        states.push(state.clone());
        tasks.push(tokio::spawn(subscriber(
            i % ws_urls.len(),
            ws_urls[i % ws_urls.len()].clone(),
            paths.clone(),
            record,
            shared.clone(),
            counters.clone(),
            state,
            sem.clone(),
            stop_rx.clone(),
        )));
    }
    let open_deadline = Instant::now() + Duration::from_secs(300);
    while (counters.opened.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)) < d.subscribers as u64
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_secs = shared.t0.elapsed().as_secs_f64();
    eprintln!(
        "realtime_load: {} subscribers open, {} failed, in {open_secs:.1} s",
        counters.opened.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed)
    );
    // Let the last subscriptions settle (and any presence events pass) before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let post_url = format!("{}/api/v1/telemetry/batch", d.urls[0].trim_end_matches('/'));
    let auth = d.post_auth.clone();
    let ack: Arc<Vec<AtomicU64>> = Arc::new((0..record).map(|_| AtomicU64::new(0)).collect());
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..record).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let post_errors = Arc::new(AtomicU64::new(0));
    let first_post_error = Arc::new(Mutex::new(None::<String>));
    // Time the posters spent held back by the window, and spent in their requests.
    let window_wait_ns = Arc::new(AtomicU64::new(0));
    let posting_ns = Arc::new(AtomicU64::new(0));
    let states = Arc::new(states);
    // Timestamps: from 10 s ago, one microsecond apart per batch: unique, in the accepted window.
    let base_us = (Utc::now() - chrono::Duration::seconds(10)).timestamp_micros();
    let send_start = Instant::now();
    let send_start_ns = shared.now_ns();
    let deadline = send_start + Duration::from_secs_f64(d.seconds);
    let mut posters = Vec::new();
    for _ in 0..d.posters.max(1) {
        let (client, post_url, auth, devices) = (client.clone(), post_url.clone(), auth.clone(), d.devices.clone());
        let (ack, sent, next, acked, post_errors, first_post_error, states, shared) = (
            ack.clone(),
            sent.clone(),
            next.clone(),
            acked.clone(),
            post_errors.clone(),
            first_post_error.clone(),
            states.clone(),
            shared.clone(),
        );
        let (interval, window, events) = (d.interval, d.window, d.events);
        let (window_wait_ns, posting_ns) = (window_wait_ns.clone(), posting_ns.clone());
        let (bare, bare_url) = (d.bare, ws_url(&d.urls[0], "-"));
        posters.push(tokio::spawn(async move {
            let mut publisher = match bare {
                Some(bytes) => match connect_async_with_config(bare_url.as_str(), None, true).await {
                    Ok((ws, _)) => Some((ws, format!("P{per_batch}:{}", event_payload(bytes)))),
                    Err(e) => {
                        post_errors.fetch_add(1, Ordering::Relaxed);
                        first_post_error.lock().unwrap().get_or_insert_with(|| e.to_string());
                        return;
                    }
                },
                None => None,
            };
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= events || Instant::now() >= deadline {
                    break;
                }
                if let Some(iv) = interval {
                    tokio::time::sleep_until((send_start + iv * k as u32).into()).await;
                }
                if let Some(w) = window {
                    // Only while every open subscriber is at most `w` events behind.
                    let waited = Instant::now();
                    while acked.load(Ordering::Relaxed) * per_batch > min_count(&states).saturating_add(w) {
                        if Instant::now() >= deadline {
                            return;
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    window_wait_ns.fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                let ts = DateTime::<Utc>::from_timestamp_micros(base_us + k as i64)
                    .unwrap_or_default()
                    .to_rfc3339_opts(SecondsFormat::Micros, true);
                let body = devices
                    .iter()
                    .map(|dev| format!(r#"{{"deviceId":"{dev}","metric":"t","value":{k},"ts":"{ts}"}}"#))
                    .collect::<Vec<_>>()
                    .join(",");
                let body = format!("[{body}]");
                if let Some(s) = sent.get(k as usize) {
                    s.store(shared.now_ns(), Ordering::Relaxed);
                }
                let posted = Instant::now();
                let res = match &mut publisher {
                    Some((ws, message)) => bare_publish(ws, message).await,
                    None => {
                        match client
                            .post(&post_url)
                            .header("authorization", &auth)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                        {
                            Ok(r) if r.status().as_u16() == 202 => Ok(()),
                            Ok(r) => {
                                let s = r.status();
                                Err(format!("{s}: {}", r.text().await.unwrap_or_default()))
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                };
                posting_ns.fetch_add(posted.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let now = shared.now_ns();
                match res {
                    Ok(()) => {
                        if let Some(a) = ack.get(k as usize) {
                            a.store(now.max(1), Ordering::Relaxed);
                        }
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        post_errors.fetch_add(1, Ordering::Relaxed);
                        first_post_error.lock().unwrap().get_or_insert_with(|| e);
                        if publisher.is_some() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    for p in posters {
        p.await?;
    }
    let send_secs = send_start.elapsed().as_secs_f64();
    // Drain: until every open subscriber has every acknowledged event, for at most 5 s.
    let acked_n = acked.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_deadline {
        let m = min_count(&states);
        if m == u64::MAX || m >= acked_n * per_batch {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).ok();
    let mut stats = Vec::new();
    for t in tasks {
        stats.push(t.await?);
    }

    let opened: Vec<&SubStats> = stats.iter().filter(|s| s.opened).collect();
    let received = shared.received.load(Ordering::Relaxed);
    let last = shared.last_recv_ns.load(Ordering::Relaxed);
    let deliver_secs = (last.saturating_sub(send_start_ns)) as f64 / 1e9;
    let mut lat = Vec::new();
    let mut per_instance = vec![Vec::new(); d.urls.len()];
    let mut from_send = Vec::new();
    let mut post_lat = Vec::new();
    let (mut missing, mut early) = (0u64, 0u64);
    if d.latency {
        for k in 0..record {
            let a = ack[k].load(Ordering::Relaxed);
            if a == 0 {
                continue;
            }
            let s = sent[k].load(Ordering::Relaxed);
            post_lat.push((a - s) as f64 / 1e6);
            for st in &opened {
                match st.recv[k] {
                    0 => missing += 1,
                    r => {
                        if r < a {
                            early += 1;
                        }
                        lat.push(r.saturating_sub(a) as f64 / 1e6);
                        per_instance[st.instance].push(r.saturating_sub(a) as f64 / 1e6);
                        from_send.push(r.saturating_sub(s) as f64 / 1e6);
                    }
                }
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    post_lat.sort_by(f64::total_cmp);
    let per_instance: Vec<Value> = per_instance
        .iter_mut()
        .map(|l| {
            l.sort_by(f64::total_cmp);
            json!({"samples": l.len(), "p50_ms": pct(l, 0.5), "p99_ms": pct(l, 0.99)})
        })
        .collect();
    let (w, p) = (window_wait_ns.load(Ordering::Relaxed) as f64, posting_ns.load(Ordering::Relaxed) as f64);
    let wait_share = w / (w + p).max(1.0);
    let sum = |f: fn(&SubStats) -> u64| opened.iter().map(|s| f(s)).sum::<u64>();
    println!(
        "{}",
        json!({
            "mode": if d.latency { "latency" } else if d.bare.is_some() { "bare-fanout" } else { "fanout" },
            "instances": d.urls.len(),
            "subscribers": counters.opened.load(Ordering::Relaxed),
            "subscribers_failed": counters.failed.load(Ordering::Relaxed),
            "first_error": counters.first_error(),
            "open_seconds": open_secs,
            "events_acked": acked_n,
            "post_errors": post_errors.load(Ordering::Relaxed),
            "first_post_error": *first_post_error.lock().unwrap(),
            "send_seconds": send_secs,
            "events_per_sec_posted": acked_n as f64 / send_secs.max(1e-9),
            "posters": d.posters.max(1),
            "poster_window_wait_share": wait_share,
            "messages": received,
            "expected_messages": acked_n * per_batch * opened.len() as u64,
            "paths_per_subscriber": per_batch,
            "deliver_seconds": deliver_secs,
            "events_per_sec": received as f64 / deliver_secs.max(1e-9),
            "message_bytes": shared.message_bytes.load(Ordering::Relaxed),
            "samples": lat.len(),
            "p50_ms": pct(&lat, 0.5),
            "p99_ms": pct(&lat, 0.99),
            "max_ms": lat.last().copied().unwrap_or(f64::NAN),
            "per_instance": per_instance,
            "from_send_p50_ms": pct(&from_send, 0.5),
            "from_send_p99_ms": pct(&from_send, 0.99),
            "post_p50_ms": pct(&post_lat, 0.5),
            "post_p99_ms": pct(&post_lat, 0.99),
            "missing": missing,
            "early": early,
            "gaps": sum(|s| s.gaps),
            "duplicates": sum(|s| s.duplicates),
            "resets": sum(|s| s.resets),
            "other_messages": sum(|s| s.other),
            "closed": counters.closed.load(Ordering::Relaxed),
            "close_reasons": counters.reasons(),
        })
    );
    Ok(())
}

/// An event-shaped JSON text of about `bytes` bytes.
fn event_payload(bytes: usize) -> String {
    let mut payload = String::from(r#"{"type":"event","path":"/live/sensors/bench","id":"1","data":{"pad":""#);
    while payload.len() + 3 < bytes {
        payload.push('x');
    }
    payload.push_str(r#""}}"#);
    payload
}

// ---------------------------------------------------------------------------------------------
// bare-server and bare-fanout: the same fan-out through a WebSocket broadcaster with no
// application logic (tokio-tungstenite and a tokio broadcast channel)
// ---------------------------------------------------------------------------------------------

/// Publishes one message through `bare-server` and waits for its "ack".
async fn bare_publish(ws: &mut Ws, message: &str) -> Result<(), String> {
    ws.send(Message::text(message)).await.map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "ack" => return Ok(()),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err("bare-server closed".into()),
            Some(Ok(_)) => {}
        }
    }
}

/// `bare-server PORT SECONDS`: accepts WebSocket connections on 127.0.0.1:PORT (any path, no
/// auth). `{"type":"subscribe","path":P}` gets `{"type":"snapshot","path":P,"id":"0","data":{}}`;
/// a text `P<n>:<message>` is broadcast n times to every connection that
/// subscribed (serialised once, shared; each connection writes what is queued and flushes once,
/// as mash does), and answered with `ack`. A subscriber more than 256 messages behind is closed,
/// like a slow consumer. Exits after SECONDS.
async fn bare_server(args: &[String]) -> anyhow::Result<()> {
    let [port, seconds] = args else { anyhow::bail!(USAGE) };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    let (tx, _) = tokio::sync::broadcast::channel::<tokio_tungstenite::tungstenite::Utf8Bytes>(256);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds.parse()?);
    println!("{}", json!({"mode": "bare-server", "listening": port}));
    loop {
        let (tcp, _) = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            a = listener.accept() => a?,
        };
        tcp.set_nodelay(true).ok();
        let tx = tx.clone();
        tokio::spawn(async move {
            let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
            let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else { return };
            let mut rx: Option<tokio::sync::broadcast::Receiver<_>> = None;
            loop {
                let event = async {
                    match rx.as_mut() {
                        Some(rx) => Some(rx.recv().await),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if let Some((n, body)) = t.as_str().strip_prefix('P').and_then(|r| r.split_once(':')) {
                                let body: tokio_tungstenite::tungstenite::Utf8Bytes = body.into();
                                for _ in 0..n.parse::<u32>().unwrap_or(1) {
                                    tx.send(body.clone()).ok();
                                }
                                if ws.send(Message::text("ack")).await.is_err() {
                                    return;
                                }
                            } else if let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                                && v["type"] == "subscribe"
                            {
                                rx = Some(tx.subscribe());
                                let snap = json!({"type": "snapshot", "path": v["path"], "id": "0", "data": {}});
                                if ws.send(Message::text(snap.to_string())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    },
                    Some(r) = event => match r {
                        Ok(msg) => {
                            // Write what else is queued now in the same flush.
                            if ws.feed(Message::Text(msg)).await.is_err() {
                                return;
                            }
                            while let Some(Ok(more)) = rx.as_mut().map(|rx| rx.try_recv()) {
                                if ws.feed(Message::Text(more)).await.is_err() {
                                    return;
                                }
                            }
                            if ws.flush().await.is_err() {
                                return;
                            }
                        }
                        Err(_) => {
                            ws.close(None).await.ok();
                            return;
                        }
                    },
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// redis-fanout: the same fan-out through Redis pub/sub
// ---------------------------------------------------------------------------------------------

async fn redis_fanout(args: &[String]) -> anyhow::Result<()> {
    let [redis_url, subs, seconds, publishers, window, payload_bytes] = args else { anyhow::bail!(USAGE) };
    let subs: usize = subs.parse()?;
    let seconds: f64 = seconds.parse()?;
    let publishers: usize = publishers.parse()?;
    let window: u64 = window.parse()?;
    let payload_bytes: usize = payload_bytes.parse()?;
    let client = redis::Client::open(redis_url.as_str())?;
    let channel = format!("mash-bench:fanout:{}", std::process::id());
    let t0 = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let last_recv_ns = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(open_concurrency()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let state = Arc::new(SubState { count: AtomicU64::new(0), closed: AtomicBool::new(false) });
        states.push(state.clone());
        let (client, channel, counters, sem, received, last_recv_ns, mut stop) = (
            client.clone(),
            channel.clone(),
            counters.clone(),
            sem.clone(),
            received.clone(),
            last_recv_ns.clone(),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let opened = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                anyhow::Ok(ps)
            };
            let ps = match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
                Ok(Ok(ps)) => ps,
                Ok(Err(e)) => {
                    state.closed.store(true, Ordering::Relaxed);
                    return counters.fail(&e);
                }
                Err(_) => {
                    state.closed.store(true, Ordering::Relaxed);
                    return counters.fail(&anyhow::anyhow!("SUBSCRIBE timed out"));
                }
            };
            drop(permit);
            counters.opened.fetch_add(1, Ordering::Relaxed);
            let mut stream = ps.into_on_message();
            loop {
                let msg = tokio::select! {
                    _ = stop.changed() => break,
                    m = stream.next() => m,
                };
                match msg {
                    Some(m) => {
                        if !m.get_payload_bytes().is_empty() {
                            state.count.fetch_add(1, Ordering::Relaxed);
                            received.fetch_add(1, Ordering::Relaxed);
                            last_recv_ns.fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        }
                    }
                    None => {
                        state.closed.store(true, Ordering::Relaxed);
                        counters.close("eof".into());
                        break;
                    }
                }
            }
        }));
    }
    let open_deadline = Instant::now() + Duration::from_secs(300);
    while (counters.opened.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed)) < subs as u64
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let payload = event_payload(payload_bytes);
    let states = Arc::new(states);
    let published = Arc::new(AtomicU64::new(0));
    let send_start = Instant::now();
    let send_start_ns = t0.elapsed().as_nanos() as u64;
    let deadline = send_start + Duration::from_secs_f64(seconds);
    let mut pubs = Vec::new();
    for _ in 0..publishers.max(1) {
        let mut con = client.get_multiplexed_async_connection().await?;
        let (channel, payload, states, published) =
            (channel.clone(), payload.clone(), states.clone(), published.clone());
        pubs.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                while published.load(Ordering::Relaxed) > min_count(&states).saturating_add(window) {
                    if Instant::now() >= deadline {
                        return anyhow::Ok(());
                    }
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg(&payload).query_async(&mut con).await?;
                published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for p in pubs {
        p.await??;
    }
    let send_secs = send_start.elapsed().as_secs_f64();
    let published_n = published.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_deadline {
        let m = min_count(&states);
        if m == u64::MAX || m >= published_n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).ok();
    for t in tasks {
        t.await?;
    }
    let received = received.load(Ordering::Relaxed);
    let deliver_secs = last_recv_ns.load(Ordering::Relaxed).saturating_sub(send_start_ns) as f64 / 1e9;
    println!(
        "{}",
        json!({
            "mode": "redis-fanout",
            "subscribers": counters.opened.load(Ordering::Relaxed),
            "subscribers_failed": counters.failed.load(Ordering::Relaxed),
            "first_error": counters.first_error(),
            "published": published_n,
            "send_seconds": send_secs,
            "messages": received,
            "expected_messages": published_n * counters.opened.load(Ordering::Relaxed),
            "deliver_seconds": deliver_secs,
            "events_per_sec": received as f64 / deliver_secs.max(1e-9),
            "message_bytes": payload.len(),
            "closed": counters.closed.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider (the server installs ring at start).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else { anyhow::bail!(USAGE) };
    let urls = |s: &str| s.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect::<Vec<_>>();
    match (mode.as_str(), rest) {
        ("idle", _) => idle(rest).await,
        ("latency", [url, token, device, device_token, subs, events, interval_ms]) => {
            let d = Delivery {
                latency: true,
                urls: urls(url),
                devices: vec![device.clone()],
                post_auth: format!("Device {device_token}"),
                subscribers: subs.parse()?,
                events: events.parse()?,
                interval: Some(Duration::from_millis(interval_ms.parse()?)),
                seconds: 3600.0,
                posters: 1,
                window: None,
                bare: None,
            };
            delivery(d, token).await
        }
        ("fanout", [url, token, devices, post_token, subs, seconds, posters, window]) => {
            let devices = urls(devices);
            let d = Delivery {
                latency: false,
                urls: urls(url),
                post_auth: if devices.len() == 1 {
                    format!("Device {post_token}")
                } else {
                    format!("Bearer {post_token}")
                },
                devices,
                subscribers: subs.parse()?,
                events: u64::MAX,
                interval: None,
                seconds: seconds.parse()?,
                posters: posters.parse()?,
                window: Some(window.parse()?),
                bare: None,
            };
            delivery(d, token).await
        }
        ("bare-fanout", [url, paths, subs, seconds, publishers, window, payload_bytes]) => {
            let d = Delivery {
                latency: false,
                urls: urls(url),
                devices: (0..paths.parse::<usize>()?.max(1)).map(|i| format!("bare-{i}")).collect(),
                post_auth: String::new(),
                subscribers: subs.parse()?,
                events: u64::MAX,
                interval: None,
                seconds: seconds.parse()?,
                posters: publishers.parse()?,
                window: Some(window.parse()?),
                bare: Some(payload_bytes.parse()?),
            };
            delivery(d, "-").await
        }
        ("bare-server", _) => bare_server(rest).await,
        ("redis-fanout", _) => redis_fanout(rest).await,
        _ => anyhow::bail!(USAGE),
    }
}
