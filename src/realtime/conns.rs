//! Every open connection of this process and the session it runs on, so that revoking a
//! session closes its connections and shutdown closes them all (and waits for them).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::outlet::{CloseReason, ConnId, Delivery, Outlet};

/// The registry of open connections.
pub struct Connections {
    conns: Mutex<HashMap<ConnId, (Uuid, Arc<Outlet>)>>,
    next: AtomicU64,
    /// Names this process's connections to other instances (Redis presence).
    instance: Uuid,
    /// Set at shutdown: connections registered from then on are closed at once.
    closing: AtomicBool,
    /// Each connection's queue, in events.
    queue: usize,
}

impl Connections {
    pub fn new(queue: usize) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            instance: Uuid::now_v7(),
            closing: AtomicBool::new(false),
            queue,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, (Uuid, Arc<Outlet>)>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection on `session`: its id, its outlet (queue and kill switch) and the
    /// queue's receiver.
    pub fn register(&self, session: Uuid) -> (ConnId, Arc<Outlet>, mpsc::Receiver<Delivery>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (outlet, rx) = Outlet::new(self.queue);
        self.lock().insert(id, (session, outlet.clone()));
        if self.closing.load(Ordering::SeqCst) {
            outlet.kill(CloseReason::Shutdown);
        }
        (id, outlet, rx)
    }

    /// The connection now runs on another session (a new `auth` message).
    pub fn set_session(&self, conn: ConnId, session: Uuid) {
        if let Some(entry) = self.lock().get_mut(&conn) {
            entry.0 = session;
        }
    }

    pub fn unregister(&self, conn: ConnId) {
        self.lock().remove(&conn);
    }

    /// Closes the connections of revoked sessions.
    pub fn close_sessions(&self, revoked: impl Fn(&Uuid) -> bool) {
        for (session, outlet) in self.lock().values() {
            if revoked(session) {
                outlet.kill(CloseReason::Revoked);
            }
        }
    }

    /// Closes every connection, and every one registered from now on.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for (_, outlet) in self.lock().values() {
            outlet.kill(CloseReason::Shutdown);
        }
    }

    /// Waits (at most `limit`) until every connection has unregistered.
    pub async fn closed(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while !self.lock().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A name for connection `conn` that is unique across instances.
    pub fn name(&self, conn: ConnId) -> String {
        format!("{}:{conn}", self.instance)
    }
}
