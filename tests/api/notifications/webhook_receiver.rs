//! A webhook receiver that records every delivery and checks its `Mash-Signature` itself.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::helpers::header;

// ---------------------------------------------------------------------------------------------
// A webhook receiver
// ---------------------------------------------------------------------------------------------

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub(super) struct Hook {
    pub(super) signature: Option<String>,
    pub(super) event_id: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) body: String,
}

impl Hook {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", self.body))
    }

    pub(super) fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }
}

#[derive(Default)]
struct HookLedger {
    pub(super) hooks: Vec<Hook>,
    /// Statuses answered instead of 200, in order.
    scripted: VecDeque<u16>,
}

#[derive(Clone)]
pub(super) struct Receiver {
    addr: SocketAddr,
    ledger: Arc<Mutex<HookLedger>>,
}

impl Receiver {
    pub(super) async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver { addr: listener.local_addr().unwrap(), ledger: Arc::default() };
        let app = Router::new().route("/hooks/alerts", post(receive_hook)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        receiver
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}/hooks/alerts", self.addr)
    }

    pub(super) fn hooks(&self) -> Vec<Hook> {
        self.ledger.lock().unwrap().hooks.clone()
    }

    pub(super) fn answer_next(&self, status: u16) {
        self.ledger.lock().unwrap().scripted.push_back(status);
    }
}

async fn receive_hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut l = receiver.ledger.lock().unwrap();
    l.hooks.push(Hook {
        signature: header(&headers, "mash-signature"),
        event_id: header(&headers, "mash-event-id"),
        content_type: header(&headers, "content-type"),
        body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
    });
    StatusCode::from_u16(l.scripted.pop_front().unwrap_or(200)).unwrap()
}

/// Checks `Mash-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"` as a receiver would (in
/// constant time); returns `t`.
pub(super) fn verify_signature(signature: &str, secret: &str, body: &str) -> Result<i64, String> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|e| format!("t={v}: {e}"))?),
            Some(("v1", v)) => candidates.push(hex::decode(v).map_err(|e| format!("v1={v}: {e}"))?),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| format!("no t in {signature:?}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    if candidates.iter().any(|c| mac.clone().verify_slice(c).is_ok()) {
        Ok(t)
    } else {
        Err(format!("no v1 in {signature:?} matches"))
    }
}
