//! One authenticated connection's subscriptions, whatever the transport: subscribing (check,
//! attach, snapshot or replay), the live stream (in id order, none missing, none repeated),
//! and cleaning up.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    hub::{CloseReason, ConnId, Delivery, Outlet, Start},
    paths::{self, Refusal},
    presence,
};
use crate::{auth::AuthUser, http::AppError, state::AppState};

/// A message for the client; `at` is the (path, id) it brings the client to, for SSE cursors.
pub struct Out {
    pub text: Utf8Bytes,
    pub at: Option<(Arc<str>, u64)>,
}

impl Out {
    fn plain(v: Value) -> Self {
        Self { text: v.to_string().into(), at: None }
    }

    fn event(d: &Delivery) -> Self {
        Self { text: d.text.clone(), at: Some((d.path.clone(), d.id)) }
    }
}

/// `{"type":"error", …}`.
pub fn error(path: Option<&str>, code: &str, message: &str) -> Out {
    let mut v = json!({ "type": "error", "code": code, "message": message });
    if let Some(p) = path {
        v["path"] = json!(p);
    }
    Out::plain(v)
}

/// What a transport tells the client when the server closes: the code (WebSocket) and words.
pub fn close_reason(reason: CloseReason) -> (u16, &'static str, &'static str) {
    match reason {
        CloseReason::SlowConsumer => (4008, "slow consumer", "slow_consumer"),
        CloseReason::Revoked => (4003, "session revoked", "revoked"),
        CloseReason::Shutdown => (1001, "server shutting down", "shutdown"),
    }
}

/// A token checked: the user, and when the token expires.
pub struct Authed {
    pub user: AuthUser,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Authed {
    pub fn check(state: &AppState, token: &str) -> Result<Self, AppError> {
        let (user, exp) = crate::auth::extract::authenticate_until(state, token)?;
        let expires_at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_else(chrono::Utc::now);
        Ok(Self { user, expires_at })
    }

    /// Time left before the token expires.
    pub fn remaining(&self) -> Duration {
        (self.expires_at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
    }

    pub fn ok_message(&self) -> Out {
        Out::plain(json!({ "type": "auth_ok", "userId": self.user.user_id, "expiresAt": self.expires_at }))
    }
}

struct Sub {
    last: u64,
}

pub struct Session {
    pub state: AppState,
    pub conn: ConnId,
    pub outlet: Arc<Outlet>,
    rx: mpsc::Receiver<Delivery>,
    /// Deliveries taken off the queue early (while a snapshot was folded), handled first.
    pending: VecDeque<Delivery>,
    pub user: AuthUser,
    subs: HashMap<Arc<str>, Sub>,
    presence: Option<presence::Member>,
    transport: &'static str,
}

impl Session {
    /// Registers the connection (for revocation and shutdown) and makes its user present.
    pub async fn open(state: &AppState, user: AuthUser, transport: &'static str) -> Self {
        let rt = &state.realtime;
        let (conn, outlet, rx) = rt.register(user.session_id);
        // A revocation between the token check and this registration was broadcast before we
        // listened: look again now that it would reach us.
        if state.auth.revocations.is_revoked(&user.session_id) {
            outlet.kill(CloseReason::Revoked);
        }
        state.metrics.realtime_connections.get_or_create(&crate::metrics::TransportLabels { transport }).inc();
        let presence = match rt.presence.join(state, rt.conn_name(conn), user.user_id).await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "presence unavailable for a new connection");
                None
            }
        };
        Self {
            state: state.clone(),
            conn,
            outlet,
            rx,
            pending: VecDeque::new(),
            user,
            subs: HashMap::new(),
            presence,
            transport,
        }
    }

    /// A new token for the same user; another user is refused.
    pub fn reauth(&mut self, authed: &Authed) -> Result<(), &'static str> {
        if authed.user.user_id != self.user.user_id {
            return Err("a connection cannot change user");
        }
        self.user = authed.user.clone();
        self.state.realtime.set_session(self.conn, self.user.session_id);
        if self.state.auth.revocations.is_revoked(&self.user.session_id) {
            self.outlet.kill(CloseReason::Revoked);
        }
        Ok(())
    }

    /// Subscribes to `path`, from `since` when given. Returns the messages to send, in order:
    /// an `error`; or a `snapshot`; or the missed events; or a `reset` and a `snapshot`.
    pub async fn subscribe(&mut self, path: &str, since: Option<u64>) -> Vec<Out> {
        if !self.subs.contains_key(path) && self.subs.len() >= self.state.config.realtime.max_subscriptions {
            let max = self.state.config.realtime.max_subscriptions;
            return vec![error(Some(path), "invalid", &format!("at most {max} subscriptions per connection"))];
        }
        if let Err(Refusal { code, message }) = paths::authorize(&self.state, &self.user, path).await {
            return vec![error(Some(path), code, &message)];
        }
        let rt = &self.state.realtime;
        if self.subs.remove(path).is_some() {
            rt.hub.detach(path, self.conn);
        }
        let key: Arc<str> = Arc::from(path);
        let start = match rt.hub.attach(path, self.conn, &self.outlet, since) {
            Start::Remote => match self.remote_start(path, since).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, path, "realtime: Redis unavailable for a subscription");
                    rt.hub.detach(path, self.conn);
                    return vec![error(
                        Some(path),
                        "unavailable",
                        &format!("{path}: could not subscribe now; try again"),
                    )];
                }
            },
            start => start,
        };
        match start {
            Start::Replay { events, last } => {
                self.subs.insert(key, Sub { last });
                events.iter().map(Out::event).collect()
            }
            Start::Snapshot { id } => self.snapshot(key, id, false).await,
            Start::Reset { id } => self.snapshot(key, id, true).await,
            // `remote_start` never answers `Remote`.
            Start::Remote => vec![error(Some(path), "unavailable", &format!("{path}: could not subscribe now"))],
        }
    }

    /// Where a subscription starts when ids live in Redis.
    async fn remote_start(&self, path: &str, since: Option<u64>) -> ::redis::RedisResult<Start> {
        let Some(redis) = &self.state.redis else { return Ok(Start::Snapshot { id: 0 }) };
        let current = super::redis::current(redis, path).await?;
        let Some(since) = since else { return Ok(Start::Snapshot { id: current }) };
        if since > current {
            return Ok(Start::Reset { id: current });
        }
        Ok(match super::redis::held(redis, path, since, current).await? {
            Some(events) => Start::Replay { events, last: current },
            None => Start::Reset { id: current },
        })
    }

    /// Reads the snapshot and builds its message (after a `reset` when `reset`). For versioned
    /// paths, live events the snapshot already covers are folded into it: its id moves past them.
    async fn snapshot(&mut self, key: Arc<str>, mut id: u64, reset: bool) -> Vec<Out> {
        let (kind, path_id) = match paths::parse(&key) {
            Ok(parsed) => parsed,
            Err(r) => return vec![error(Some(&key), r.code, &r.message)],
        };
        let snap = match (kind.snapshot)(&self.state, path_id).await {
            Ok(s) => s,
            Err(e) => {
                self.state.realtime.hub.detach(&key, self.conn);
                let (code, message) = match e {
                    AppError::NotFound(_) => ("not_found", format!("{key}: no longer exists")),
                    e => {
                        tracing::warn!(error = %e, path = %key, "realtime: snapshot failed");
                        ("unavailable", format!("{key}: could not be read now; try again"))
                    }
                };
                return vec![error(Some(&key), code, &message)];
            }
        };
        if let Some(version) = snap.version {
            // A change committed just before the read may not be published yet: its event
            // would follow the snapshot that already shows it. Wait (briefly) until it is here.
            let recent = snap.changed_at.is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::seconds(2));
            let hub = &self.state.realtime.hub;
            let until = tokio::time::Instant::now() + Duration::from_millis(250);
            while recent && hub.version(&key).is_none_or(|v| v < version) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            while let Ok(d) = self.rx.try_recv() {
                self.pending.push_back(d);
            }
            // Leading events of this path that the snapshot already shows.
            let mut keep = VecDeque::with_capacity(self.pending.len());
            let mut folding = true;
            for d in self.pending.drain(..) {
                if d.path == key && d.id <= id {
                    continue;
                }
                if folding && d.path == key && d.id == id + 1 && d.version.is_some_and(|v| v <= version) {
                    id = d.id;
                    continue;
                }
                if d.path == key {
                    folding = false;
                }
                keep.push_back(d);
            }
            self.pending = keep;
        }
        let mut out = Vec::with_capacity(2);
        if reset {
            out.push(Out::plain(json!({ "type": "reset", "path": &*key })));
        }
        // Written by hand so `type` leads, as in every other message.
        let text = format!(r#"{{"type":"snapshot","path":{},"id":"{id}","data":{}}}"#, json!(&*key), snap.data);
        out.push(Out { text: text.into(), at: Some((key.clone(), id)) });
        self.subs.insert(key, Sub { last: id });
        out
    }

    pub fn unsubscribe(&mut self, path: &str) -> Out {
        if self.subs.remove(path).is_some() {
            self.state.realtime.hub.detach(path, self.conn);
        }
        Out::plain(json!({ "type": "unsubscribed", "path": path }))
    }

    /// The next live delivery (waiting for one).
    pub async fn next_delivery(&mut self) -> Option<Delivery> {
        if let Some(d) = self.pending.pop_front() {
            return Some(d);
        }
        self.rx.recv().await
    }

    /// What `first` and the deliveries already queued behind it (up to 64) become for the
    /// client, so a transport writes them in one flush.
    pub async fn outs_from(&mut self, first: Delivery) -> Vec<Out> {
        let mut outs = self.on_delivery(first).await;
        for _ in 0..64 {
            let Some(more) = self.pending.pop_front().or_else(|| self.rx.try_recv().ok()) else { break };
            outs.extend(self.on_delivery(more).await);
        }
        outs
    }

    /// What a live delivery becomes for the client: nothing (not subscribed, or already
    /// covered), the event, or, after a gap, the missed events first (from the replay
    /// buffer) or a `reset` and a new snapshot.
    async fn on_delivery(&mut self, d: Delivery) -> Vec<Out> {
        let Some(sub) = self.subs.get_mut(&d.path) else { return Vec::new() };
        if d.id <= sub.last {
            return Vec::new();
        }
        if d.id == sub.last + 1 {
            sub.last = d.id;
            return vec![Out::event(&d)];
        }
        let after = sub.last;
        let missed = match &self.state.redis {
            Some(redis) => super::redis::held(redis, &d.path, after, d.id - 1).await.ok().flatten(),
            None => self.state.realtime.hub.held(&d.path, after, d.id - 1),
        };
        if let Some(missed) = missed {
            if let Some(sub) = self.subs.get_mut(&d.path) {
                sub.last = d.id;
            }
            return missed.iter().chain(std::iter::once(&d)).map(Out::event).collect();
        }
        // The snapshot is read after `d` was published, so it covers `d`.
        self.snapshot(d.path.clone(), d.id, true).await
    }

    /// Unsubscribes everything, leaves presence, unregisters. Call once, at the end.
    pub async fn close(mut self, reason: &'static str) {
        let rt = &self.state.realtime;
        for path in self.subs.keys() {
            rt.hub.detach(path, self.conn);
        }
        self.subs.clear();
        self.rx.close();
        if let Some(m) = self.presence.take() {
            rt.presence.leave(&self.state, &m).await;
        }
        // Last: shutdown waits for this.
        rt.unregister(self.conn);
        let transport = self.transport;
        self.state.metrics.realtime_connections.get_or_create(&crate::metrics::TransportLabels { transport }).dec();
        self.state.metrics.realtime_disconnects.get_or_create(&crate::metrics::ReasonLabels { reason }).inc();
    }
}
