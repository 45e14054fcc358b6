//! One authenticated connection's subscriptions, whatever the transport: subscribing (check,
//! attach, then a snapshot, the missed events or a reset), the live stream (in id order, none
//! missing, none repeated), and cleaning up. Written once for either replay store.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use tokio::sync::mpsc;

use super::{
    hub::{CloseReason, ConnId, Delivery, Outlet, Start},
    messages::{Authed, Out, error},
    paths::{self, Refusal},
    presence,
};
use crate::{auth::AuthUser, state::AppState};

mod live;
mod snapshot;

struct Sub {
    /// The last id the client has of this path.
    last: u64,
}

/// One authenticated connection: its outlet, its user and presence, and its subscriptions.
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
        let (conn, outlet, rx) = rt.conns.register(user.session_id);
        // A revocation between the token check and this registration was broadcast before we
        // listened: look again now that it would reach us.
        if state.auth.revocations.is_revoked(&user.session_id) {
            outlet.kill(CloseReason::Revoked);
        }
        state.metrics.realtime_connections.get_or_create(&crate::metrics::TransportLabels { transport }).inc();
        let presence = match rt.presence.join(state, rt.conns.name(conn), user.user_id.into()).await {
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
        self.state.realtime.conns.set_session(self.conn, self.user.session_id);
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
        let hub = &self.state.realtime.hub;
        if self.subs.remove(path).is_some() {
            hub.detach(path, self.conn);
        }
        let key: Arc<str> = Arc::from(path);
        let start = match hub.attach(path, self.conn, &self.outlet, since).start().await {
            Ok(start) => start,
            Err(e) => {
                tracing::warn!(error = %e, path, "realtime: the replay store is unavailable for a subscription");
                hub.detach(path, self.conn);
                return vec![error(Some(path), "unavailable", &format!("{path}: could not subscribe now; try again"))];
            }
        };
        match start {
            Start::Replay { events, last } => {
                self.subs.insert(key, Sub { last });
                events.iter().map(Out::event).collect()
            }
            Start::Snapshot { id } => self.snapshot(key, id, false).await,
            Start::Reset { id } => self.snapshot(key, id, true).await,
        }
    }

    pub fn unsubscribe(&mut self, path: &str) -> Out {
        if self.subs.remove(path).is_some() {
            self.state.realtime.hub.detach(path, self.conn);
        }
        Out::plain(serde_json::json!({ "type": "unsubscribed", "path": path }))
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
        rt.conns.unregister(self.conn);
        let transport = self.transport;
        self.state.metrics.realtime_connections.get_or_create(&crate::metrics::TransportLabels { transport }).dec();
        self.state.metrics.realtime_disconnects.get_or_create(&crate::metrics::ReasonLabels { reason }).inc();
    }
}
