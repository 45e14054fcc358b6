//! What travels from a publisher to a connection: an event serialised once ([`Frame`], shared by
//! every subscriber as a [`Delivery`]) and the connection's end of it ([`Outlet`]: a bounded
//! queue and a kill switch). Nothing here ever waits on a subscriber.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

/// One event, serialised once for all subscribers.
#[derive(Debug)]
pub struct Frame {
    pub path: Arc<str>,
    pub id: u64,
    /// For paths whose data carries a version (desired state): never decreases.
    pub version: Option<i64>,
    /// The whole message: `{"type":"event","path":…,"id":"…","data":…}`.
    pub text: Utf8Bytes,
}

impl Frame {
    /// Builds the message from already-serialised `data`.
    pub fn new(path: Arc<str>, id: u64, version: Option<i64>, data: &str) -> Self {
        let text = format!(
            r#"{{"type":"event","path":{},"id":"{id}","data":{data}}}"#,
            serde_json::Value::String(path.to_string())
        );
        Self { path, id, version, text: text.into() }
    }
}

/// An event as every subscriber receives it.
pub type Delivery = Arc<Frame>;

/// A connection of this process.
pub type ConnId = u64;

/// Why the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    Revoked,
    Shutdown,
}

/// A connection as publishers see it: where its events go, and how to stop it.
pub struct Outlet {
    pub tx: mpsc::Sender<Delivery>,
    reason: OnceLock<CloseReason>,
    notify: Notify,
}

impl Outlet {
    /// An outlet whose queue holds `queue` events, and the queue's receiving end.
    pub fn new(queue: usize) -> (Arc<Self>, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(queue);
        (Arc::new(Self { tx, reason: OnceLock::new(), notify: Notify::new() }), rx)
    }

    /// Hands `frame` over without waiting: a full queue marks the connection too slow (it is
    /// closed); `false` when the connection is gone.
    pub fn offer(&self, frame: &Delivery) -> bool {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill(CloseReason::SlowConsumer);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection to close; the first reason wins.
    pub fn kill(&self, reason: CloseReason) {
        if self.reason.set(reason).is_ok() {
            self.notify.notify_one();
        }
    }

    /// Why the connection was asked to close, once it was.
    pub fn killed(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Resolves once the connection is asked to close.
    pub async fn wait_killed(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.killed() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_text_is_the_contract_message() {
        let f = Frame::new(Arc::from("/alerts/x"), 7, None, r#"{"a":1}"#);
        let v: serde_json::Value = serde_json::from_str(&f.text).unwrap();
        assert_eq!(v, serde_json::json!({"type":"event","path":"/alerts/x","id":"7","data":{"a":1}}));
    }

    #[test]
    fn a_full_queue_kills_the_outlet_as_slow() {
        let (outlet, _rx) = Outlet::new(1);
        let frame = Arc::new(Frame::new(Arc::from("/p"), 1, None, "1"));
        assert!(outlet.offer(&frame));
        assert_eq!(outlet.killed(), None);
        assert!(outlet.offer(&frame), "a slow connection stays subscribed until it closes");
        assert_eq!(outlet.killed(), Some(CloseReason::SlowConsumer));
    }
}
