//! A fake Stripe (PaymentIntents, refunds, cancels) that records every request it gets and
//! keeps Stripe's `Idempotency-Key` rules: a repeated key with the same parameters returns the
//! first answer and creates nothing, the same key with other parameters is an
//! `idempotency_error`. Answers can be scripted, and intent creations held until several arrive.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::helpers::{header, reply};

// ---------------------------------------------------------------------------------------------
// A fake Stripe
// ---------------------------------------------------------------------------------------------

/// One request the fake Stripe received.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) path: String,
    pub(super) authorization: Option<String>,
    pub(super) idempotency_key: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) form: Vec<(String, String)>,
}

impl Seen {
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A saved answer under an idempotency key, as Stripe keeps it.
struct Saved {
    pub(super) path: String,
    pub(super) form: Vec<(String, String)>,
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

#[derive(Default)]
struct Ledger {
    pub(super) seen: Vec<Seen>,
    saved: HashMap<String, Saved>,
    /// PaymentIntents created, in order: id -> amount.
    pub(super) intents: Vec<(String, i64)>,
    pub(super) refunds: Vec<String>,
    pub(super) cancelled: Vec<String>,
    /// Answers given instead of the real one (path prefix, status, body), each once, before
    /// Stripe starts executing (so nothing is saved under the key, as for a transient failure).
    scripted: VecDeque<(String, u16, Value)>,
    /// Holds PaymentIntent creations until this many have arrived (bounded wait).
    pub(super) gate: usize,
}

#[derive(Clone, Default)]
struct Shared {
    ledger: Arc<Mutex<Ledger>>,
    /// Stripe executes requests with one key one after the other.
    serial: Arc<tokio::sync::Mutex<()>>,
}

pub(super) struct FakeStripe {
    addr: SocketAddr,
    shared: Shared,
}

pub(super) fn stripe_error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (status, json!({"error": {"type": kind, "message": message}}))
}

impl FakeStripe {
    pub(super) async fn start() -> FakeStripe {
        let shared = Shared::default();
        let app = Router::new()
            .route("/v1/payment_intents", post(stripe_endpoint))
            .route("/v1/payment_intents/{id}/cancel", post(stripe_endpoint))
            .route("/v1/refunds", post(stripe_endpoint))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeStripe { addr, shared }
    }

    pub(super) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received on exactly this path, oldest first.
    pub(super) fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared.ledger.lock().unwrap().seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    pub(super) fn all_seen(&self) -> usize {
        self.shared.ledger.lock().unwrap().seen.len()
    }

    /// The PaymentIntents really created (not replays), with their amounts.
    pub(super) fn intents(&self) -> Vec<(String, i64)> {
        self.shared.ledger.lock().unwrap().intents.clone()
    }

    pub(super) fn refunds(&self) -> Vec<String> {
        self.shared.ledger.lock().unwrap().refunds.clone()
    }

    pub(super) fn cancelled(&self) -> Vec<String> {
        self.shared.ledger.lock().unwrap().cancelled.clone()
    }

    /// The next request whose path starts with `prefix` gets this answer instead.
    pub(super) fn script(&self, prefix: &str, (status, body): (u16, Value)) {
        self.shared.ledger.lock().unwrap().scripted.push_back((prefix.to_string(), status, body));
    }

    pub(super) fn gate(&self, creations: usize) {
        self.shared.ledger.lock().unwrap().gate = creations;
    }
}

async fn stripe_endpoint(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let key = header(&headers, "idempotency-key");
    let authorization = header(&headers, "authorization");
    let scripted = {
        let mut l = shared.ledger.lock().unwrap();
        l.seen.push(Seen {
            path: path.clone(),
            authorization: authorization.clone(),
            idempotency_key: key.clone(),
            content_type: header(&headers, "content-type"),
            form: form.clone(),
        });
        let at = l.scripted.iter().position(|(prefix, _, _)| path.starts_with(prefix.as_str()));
        at.and_then(|i| l.scripted.remove(i))
    };
    if !authorization.as_deref().is_some_and(|a| a.starts_with("Bearer sk_test_")) {
        let (status, body) = stripe_error(401, "invalid_request_error", "Invalid API Key provided");
        return reply(status, body);
    }
    if let Some((_, status, body)) = scripted {
        return reply(status, body);
    }
    if path == "/v1/payment_intents" {
        // Bounded: at most five seconds for the other creations to arrive.
        for _ in 0..500 {
            let (gate, arrived) = {
                let l = shared.ledger.lock().unwrap();
                (l.gate, l.seen.iter().filter(|s| s.path == path).count())
            };
            if arrived >= gate {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _one_at_a_time = shared.serial.lock().await;
    let mut l = shared.ledger.lock().unwrap();
    if let Some(key) = &key
        && let Some(saved) = l.saved.get(key)
    {
        if saved.path == path && saved.form == form {
            let mut res = (saved.status, axum::Json(saved.body.clone())).into_response();
            res.headers_mut().insert("idempotent-replayed", "true".parse().unwrap());
            return res;
        }
        let (status, body) = stripe_error(
            400,
            "idempotency_error",
            &format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                 Try using a key other than '{key}' if you meant to execute a different request."
            ),
        );
        return reply(status, body);
    }
    let (status, body) = execute(&mut l, &path, &form);
    if let Some(key) = key {
        l.saved.insert(key, Saved { path, form, status: StatusCode::from_u16(status).unwrap(), body: body.clone() });
    }
    reply(status, body)
}

/// What Stripe does for one request that got past authentication and idempotency.
fn execute(l: &mut Ledger, path: &str, form: &[(String, String)]) -> (u16, Value) {
    let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let hex_id = || Uuid::new_v4().simple().to_string()[..24].to_string();
    if path == "/v1/payment_intents" {
        let Some(amount) = param("amount").and_then(|a| a.parse::<i64>().ok()).filter(|a| *a > 0) else {
            return stripe_error(400, "invalid_request_error", "Missing required param: amount.");
        };
        let Some(currency) = param("currency") else {
            return stripe_error(400, "invalid_request_error", "Missing required param: currency.");
        };
        let id = format!("pi_{}", hex_id());
        l.intents.push((id.clone(), amount));
        return (
            200,
            json!({
                "id": id, "object": "payment_intent", "client_secret": format!("{id}_secret_{}", hex_id()),
                "status": "requires_payment_method", "amount": amount, "currency": currency,
                "metadata": {"order_id": param("metadata[order_id]"), "user_id": param("metadata[user_id]")},
            }),
        );
    }
    if path == "/v1/refunds" {
        let Some(intent) = param("payment_intent") else {
            return stripe_error(400, "invalid_request_error", "Missing required param: payment_intent.");
        };
        let Some(&(_, amount)) = l.intents.iter().find(|(id, _)| *id == intent) else {
            return stripe_error(400, "invalid_request_error", &format!("No such payment_intent: '{intent}'"));
        };
        let id = format!("re_{}", hex_id());
        l.refunds.push(intent.clone());
        return (
            200,
            json!({"id": id, "object": "refund", "payment_intent": intent, "amount": amount, "status": "succeeded"}),
        );
    }
    if let Some(intent) = path.strip_prefix("/v1/payment_intents/").and_then(|p| p.strip_suffix("/cancel")) {
        if !l.intents.iter().any(|(id, _)| id == intent) {
            return stripe_error(404, "invalid_request_error", &format!("No such payment_intent: '{intent}'"));
        }
        l.cancelled.push(intent.to_string());
        return (200, json!({"id": intent, "object": "payment_intent", "status": "canceled"}));
    }
    stripe_error(404, "invalid_request_error", "Unrecognized request URL")
}
