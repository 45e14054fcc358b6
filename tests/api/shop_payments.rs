//! CONTRACT.md "Shop", payments: opening a payment for an order (`POST /orders/{id}/payments`)
//! through the Stripe client against a fake Stripe that runs in the test (PaymentIntents,
//! refunds and cancels, its `Idempotency-Key` rules, its error answers, and a Stripe that cannot
//! be reached); signed Stripe webhooks (`Stripe-Signature`, tolerance, replays, each event id
//! applied once) and what each event does to the payment, the order and the stock; refunds by
//! an admin; cancelling an order with an open intent; the sandbox provider with its
//! `sandbox-confirm`; who may see and do what; and the `payment_webhook_events` metric.
//!
//! The fake Stripe (`FakeStripe`) records every request it gets (path, headers, form) so the
//! tests can check what our client really sent, and behaves like Stripe where it matters: a
//! secret key is required, a repeated `Idempotency-Key` with the same parameters returns the
//! first answer and creates nothing, and the same key with other parameters is refused with an
//! `idempotency_error` (Stripe's documented behaviour).

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
use chrono::Utc;
use hmac::{Hmac, Mac};
use mash::shop::entity::payment as payment_row;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, admin, authed, get_authed, json_of, register, user_with_role},
    assert_error, header, reply,
    shop::{create_category, create_product, money, open_payment, order_ok, product_body},
    spawn_app, spawn_app_with,
};

const SECRET_KEY: &str = "sk_test_123";
const WEBHOOK_SECRET: &str = "whsec_test";

// ---------------------------------------------------------------------------------------------
// A fake Stripe
// ---------------------------------------------------------------------------------------------

/// One request the fake Stripe received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    idempotency_key: Option<String>,
    content_type: Option<String>,
    form: Vec<(String, String)>,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A saved answer under an idempotency key, as Stripe keeps it.
struct Saved {
    path: String,
    form: Vec<(String, String)>,
    status: StatusCode,
    body: Value,
}

#[derive(Default)]
struct Ledger {
    seen: Vec<Seen>,
    saved: HashMap<String, Saved>,
    /// PaymentIntents created, in order: id -> amount.
    intents: Vec<(String, i64)>,
    refunds: Vec<String>,
    cancelled: Vec<String>,
    /// Answers given instead of the real one (path prefix, status, body), each once, before
    /// Stripe starts executing (so nothing is saved under the key, as for a transient failure).
    scripted: VecDeque<(String, u16, Value)>,
    /// Holds PaymentIntent creations until this many have arrived (bounded wait).
    gate: usize,
}

#[derive(Clone, Default)]
struct Shared {
    ledger: Arc<Mutex<Ledger>>,
    /// Stripe executes requests with one key one after the other.
    serial: Arc<tokio::sync::Mutex<()>>,
}

struct FakeStripe {
    addr: SocketAddr,
    shared: Shared,
}

fn stripe_error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (status, json!({"error": {"type": kind, "message": message}}))
}

impl FakeStripe {
    async fn start() -> FakeStripe {
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

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received on exactly this path, oldest first.
    fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared.ledger.lock().unwrap().seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    fn all_seen(&self) -> usize {
        self.shared.ledger.lock().unwrap().seen.len()
    }

    /// The PaymentIntents really created (not replays), with their amounts.
    fn intents(&self) -> Vec<(String, i64)> {
        self.shared.ledger.lock().unwrap().intents.clone()
    }

    fn refunds(&self) -> Vec<String> {
        self.shared.ledger.lock().unwrap().refunds.clone()
    }

    fn cancelled(&self) -> Vec<String> {
        self.shared.ledger.lock().unwrap().cancelled.clone()
    }

    /// The next request whose path starts with `prefix` gets this answer instead.
    fn script(&self, prefix: &str, (status, body): (u16, Value)) {
        self.shared.ledger.lock().unwrap().scripted.push_back((prefix.to_string(), status, body));
    }

    fn gate(&self, creations: usize) {
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

// ---------------------------------------------------------------------------------------------
// The shop around it
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Product {
    id: Uuid,
    price_minor: i64,
    stock: i64,
}

struct Shop {
    app: TestApp,
    admin: Account,
    customer: Account,
    apple: Product,
    basil: Product,
}

fn stripe_config(fake: &FakeStripe) -> Vec<(&'static str, String)> {
    vec![
        ("PAYMENT_PROVIDER", "stripe".into()),
        ("STRIPE_SECRET_KEY", SECRET_KEY.into()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("STRIPE_API_BASE", fake.base()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn stripe_shop() -> (Shop, FakeStripe) {
    let fake = FakeStripe::start().await;
    let app = spawn_app_with(&borrowed(&stripe_config(&fake)), Router::new()).await;
    (shop(app).await, fake)
}

/// An admin, a customer, and two products the admin put in the catalogue.
async fn shop(app: TestApp) -> Shop {
    let admin = admin(&app).await;
    let customer = register(&app, "customer").await;
    let category = create_category(&app, &admin, &format!("Seedlings {}", Uuid::now_v7().simple())).await;
    let apple = priced_product(&app, &admin, category, "apple", 1234, 10).await;
    let basil = priced_product(&app, &admin, category, "basil", 505, 10).await;
    Shop { app, admin, customer, apple, basil }
}

/// A product of `price` cents (the price the answer shows asserted).
async fn priced_product(app: &TestApp, admin: &Account, category: Uuid, name: &str, price: i64, stock: i64) -> Product {
    let sku = format!("{name}-{}", Uuid::now_v7().simple());
    let out = create_product(app, admin, product_body(&sku, name, &money(price), stock, category)).await;
    assert_eq!(out["price"], money(price), "{out}");
    Product { id: out["id"].as_str().unwrap().parse().unwrap(), price_minor: price, stock }
}

/// Places an order for `lines`; returns its id and its total in cents as computed here from
/// the catalogue prices (and checks the order's own total against it).
async fn priced_order(app: &TestApp, by: &Account, lines: &[(Product, i64)]) -> (Uuid, i64) {
    let list: Vec<(Uuid, i64)> = lines.iter().map(|(p, q)| (p.id, *q)).collect();
    let order = order_ok(app, by, &list).await;
    let total: i64 = lines.iter().map(|(p, q)| p.price_minor * q).sum();
    assert_eq!(order["status"], "pending", "{order}");
    assert_eq!(order["total"], money(total), "{order}");
    (order["id"].as_str().unwrap().parse().unwrap(), total)
}

/// Opens a payment (201 asserted) and returns its body.
async fn open_payment_ok(app: &TestApp, by: &Account, order: Uuid) -> Value {
    json_of(open_payment(app, &by.access, order).await, 201).await
}

async fn payment_of(app: &TestApp, token: &str, id: &str) -> Value {
    json_of(get_authed(app, &format!("/api/v1/payments/{id}"), token).await, 200).await
}

async fn order_status(app: &TestApp, by: &Account, order: Uuid) -> String {
    let body = json_of(get_authed(app, &format!("/api/v1/orders/{order}"), &by.access).await, 200).await;
    body["status"].as_str().unwrap().to_string()
}

/// The stock the public catalogue shows.
async fn stock_of(app: &TestApp, product: Product) -> i64 {
    let body = json_of(app.get(&format!("/api/v1/products/{}", product.id)).await, 200).await;
    body["stock"].as_i64().unwrap()
}

/// `(transactionType, status)` of each step of a payment, oldest first.
fn steps(payment: &Value) -> Vec<(String, String)> {
    payment["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| (t["transactionType"].as_str().unwrap().to_string(), t["status"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn payments_in_db(app: &TestApp, order: Uuid) -> u64 {
    payment_row::Entity::find().filter(payment_row::Column::OrderId.eq(order)).count(&app.state.db).await.unwrap()
}

/// The PaymentIntent behind a payment: its client secret is `<intent id>_secret_<…>`, and the
/// fake must have created that intent.
fn intent_for(fake: &FakeStripe, payment: &Value) -> String {
    let secret = payment["clientSecret"].as_str().expect("clientSecret");
    let (intent, _) = secret.split_once("_secret_").expect("a PaymentIntent client secret");
    assert!(fake.intents().iter().any(|(id, _)| id == intent), "the fake never created {intent}");
    intent.to_string()
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// Stripe's signature: hex HMAC-SHA256 of `"{t}.{body}"` with the endpoint secret.
fn sign(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn signature(t: i64, body: &str) -> String {
    format!("t={t},v1={}", sign(WEBHOOK_SECRET, t, body))
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn event_id() -> String {
    format!("evt_{}", Uuid::now_v7().simple())
}

/// A PaymentIntent event as Stripe sends it.
fn intent_event(id: &str, kind: &str, intent: &str, amount: i64, received: i64, currency: &str) -> String {
    json!({"id": id, "object": "event", "type": kind, "livemode": false, "created": now(),
           "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount,
                               "amount_received": received, "currency": currency,
                               "last_payment_error": if received == 0 { json!({"message": "Your card was declined."}) } else { Value::Null }}}})
    .to_string()
}

fn succeeded(intent: &str, amount: i64) -> String {
    intent_event(&event_id(), "payment_intent.succeeded", intent, amount, amount, "usd")
}

fn charge_refunded(intent: &str, refunded_minor: i64, full: bool) -> String {
    json!({"id": event_id(), "object": "event", "type": "charge.refunded", "created": now(),
           "data": {"object": {"id": format!("ch_{}", Uuid::now_v7().simple()), "object": "charge",
                               "payment_intent": intent, "amount_refunded": refunded_minor, "refunded": full}}})
    .to_string()
}

async fn deliver_to(app: &TestApp, provider: &str, body: &str, stripe_signature: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/webhooks/payments/{provider}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(sig) = stripe_signature {
        req = req.header("stripe-signature", sig);
    }
    req.send().await.unwrap()
}

const STRIPE_HOOK: &str = "/api/v1/webhooks/payments/stripe";

async fn deliver(app: &TestApp, body: &str, stripe_signature: Option<&str>) -> reqwest::Response {
    deliver_to(app, "stripe", body, stripe_signature).await
}

/// Delivers a correctly signed event; 200 asserted; returns the `outcome`.
async fn deliver_signed(app: &TestApp, body: &str) -> String {
    let ack = json_of(deliver(app, body, Some(&signature(now(), body))).await, 200).await;
    assert_eq!(ack["received"], true, "{ack}");
    ack["outcome"].as_str().unwrap().to_string()
}

/// The sum of a metric's samples carrying all `labels` (0 when there are none).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// A customer's order of 2 apples and 3 basil, with a Stripe payment opened for it.
struct Paying {
    order: Uuid,
    total: i64,
    payment: Value,
    intent: String,
}

async fn open_stripe_payment(shop: &Shop, fake: &FakeStripe) -> Paying {
    let (order, total) = priced_order(&shop.app, &shop.customer, &[(shop.apple, 2), (shop.basil, 3)]).await;
    let payment = open_payment_ok(&shop.app, &shop.customer, order).await;
    let intent = intent_for(fake, &payment);
    Paying { order, total, payment, intent }
}

fn payment_id(p: &Value) -> String {
    p["paymentId"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Opening a payment with Stripe
// ---------------------------------------------------------------------------------------------

/// The PaymentIntent carries the order's total in cents (computed here from the catalogue
/// prices), the currency, the order and its customer, our secret key and an idempotency key;
/// asking again returns the same payment without a second intent.
#[tokio::test]
async fn a_stripe_payment_asks_stripe_for_the_order_total_once() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let (order, total) = priced_order(app, &shop.customer, &[(shop.apple, 2), (shop.basil, 3)]).await;

    let payment = open_payment_ok(app, &shop.customer, order).await;
    assert_eq!(payment["provider"], "stripe", "{payment}");
    assert_eq!(payment["status"], "pending", "{payment}");
    assert_eq!(payment["amount"], money(total), "{payment}");
    assert_eq!(payment["currency"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("usd"), "{payment}");
    assert_eq!(payment["orderId"], order.to_string(), "{payment}");
    let id: Uuid = payment_id(&payment).parse().expect("paymentId is a UUID");

    let calls = fake.seen("/v1/payment_intents");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {SECRET_KEY}").as_str()));
    assert!(call.content_type.as_deref().is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")));
    assert_eq!(call.param("amount"), Some(total.to_string().as_str()), "{call:?}");
    assert_eq!(call.param("currency"), Some("usd"), "{call:?}");
    assert_eq!(call.param("metadata[order_id]"), Some(order.to_string().as_str()), "{call:?}");
    // Every parameter derives from the order (not from the payment row made after the call), so
    // a retry or a concurrent request under the same idempotency key is the same request.
    assert_eq!(call.param("metadata[user_id]"), Some(shop.customer.id.to_string().as_str()), "{call:?}");
    assert!(call.idempotency_key.as_deref().is_some_and(|k| !k.is_empty()), "{call:?}");
    let intents = fake.intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intent_for(&fake, &payment), intents[0].0);

    // Asking again (a reload, a double tap) gives the same payment and no new intent.
    let again = json_of(open_payment(app, &shop.customer.access, order).await, 201).await;
    assert_eq!(again["paymentId"], payment["paymentId"], "{again}");
    assert_eq!(again["clientSecret"], payment["clientSecret"], "{again}");
    assert_eq!(fake.intents().len(), 1);
    assert_eq!(payments_in_db(app, order).await, 1);

    // The owner sees the client secret and the first step; an admin sees the payment without
    // the secret; anyone else sees nothing.
    let own = payment_of(app, &shop.customer.access, &id.to_string()).await;
    assert_eq!(own["clientSecret"], payment["clientSecret"], "{own}");
    assert_eq!(steps(&own), pairs(&[("initiate", "pending")]), "{own}");
    let by_admin = payment_of(app, &shop.admin.access, &id.to_string()).await;
    assert_eq!(by_admin["paymentId"], payment["paymentId"], "{by_admin}");
    assert!(by_admin.get("clientSecret").is_none_or(Value::is_null), "{by_admin}");
    assert!(!by_admin.to_string().contains(payment["clientSecret"].as_str().unwrap()), "{by_admin}");
    let other = register(app, "other").await;
    let path = format!("/api/v1/payments/{id}");
    assert_error(get_authed(app, &path, &other.access).await, 404, &path).await;
    assert_error(app.get(&path).await, 401, &path).await;

    // Who may pay: only the customer who placed the order.
    let pay_path = format!("/api/v1/orders/{order}/payments");
    assert_error(app.client.post(app.url(&pay_path)).send().await.unwrap(), 401, &pay_path).await;
    assert_error(open_payment(app, &other.access, order).await, 404, &pay_path).await;
    let vendor = user_with_role(app, "vendor", "VENDOR").await;
    assert_error(open_payment(app, &vendor.access, order).await, 404, &pay_path).await;
    assert_error(open_payment(app, &shop.admin.access, order).await, 403, &pay_path).await;
    let unknown = Uuid::now_v7();
    let unknown_path = format!("/api/v1/orders/{unknown}/payments");
    assert_error(open_payment(app, &shop.customer.access, unknown).await, 404, &unknown_path).await;
    let bad = "/api/v1/orders/not-a-uuid/payments";
    let res = authed(app, Method::POST, bad, &shop.customer.access).send().await.unwrap();
    assert_error(res, 400, bad).await;
    assert_eq!(fake.intents().len(), 1, "refused requests reached Stripe");
    assert_eq!(payments_in_db(app, order).await, 1);
}

/// Two pay requests for one order at the same moment (two tabs, a double tap) must end as one
/// intent and one payment that both callers get. The fake holds the first PaymentIntent request
/// until a second has arrived (or a few seconds passed), so both really race to Stripe; Stripe
/// replays the first intent only for a retry with the same key *and the same parameters*.
#[tokio::test]
async fn simultaneous_pay_requests_share_one_intent() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let (order, _) = priced_order(app, &shop.customer, &[(shop.apple, 1)]).await;
    fake.gate(2);
    let (a, b) =
        tokio::join!(open_payment(app, &shop.customer.access, order), open_payment(app, &shop.customer.access, order));
    let (a, b) = (json_of(a, 201).await, json_of(b, 201).await);
    assert_eq!(a["paymentId"], b["paymentId"], "{a} {b}");
    assert_eq!(a["clientSecret"], b["clientSecret"], "{a} {b}");
    let calls = fake.seen("/v1/payment_intents");
    // (An application that serialised the two requests itself would send only one.)
    assert!(!calls.is_empty() && calls.len() <= 2, "{calls:?}");
    assert!(calls.iter().all(|c| c.idempotency_key.is_some() && c.idempotency_key == calls[0].idempotency_key));
    assert_eq!(fake.intents().len(), 1);
    assert_eq!(payments_in_db(app, order).await, 1);
}

/// Stripe answering 500 once: the client retries with the same idempotency key and the same
/// parameters, and the customer gets one payment backed by one intent.
#[tokio::test]
async fn a_stripe_server_error_is_retried_under_the_same_key() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let (order, total) = priced_order(app, &shop.customer, &[(shop.basil, 4)]).await;
    fake.script("/v1/payment_intents", stripe_error(500, "api_error", "An unknown error occurred"));

    let payment = open_payment_ok(app, &shop.customer, order).await;
    let calls = fake.seen("/v1/payment_intents");
    assert_eq!(calls.len(), 2, "one failure, one retry: {calls:?}");
    assert!(calls[0].idempotency_key.is_some());
    assert_eq!(calls[0].idempotency_key, calls[1].idempotency_key);
    assert_eq!(calls[0].form, calls[1].form);
    assert_eq!(fake.intents(), vec![(intent_for(&fake, &payment), total)]);
    assert_eq!(payments_in_db(app, order).await, 1);
}

/// Stripe refusing (402 card error, 400 invalid request) is a 422 in our error shape that
/// tells why, and records nothing; a later attempt works. A Stripe that cannot be reached is
/// a 503, never a 500.
#[tokio::test]
async fn stripe_refusals_are_422_and_an_unreachable_stripe_is_503() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let (order, _) = priced_order(app, &shop.customer, &[(shop.apple, 1)]).await;
    let path = format!("/api/v1/orders/{order}/payments");

    fake.script("/v1/payment_intents", stripe_error(402, "card_error", "Your card was declined."));
    let err = assert_error(open_payment(app, &shop.customer.access, order).await, 422, &path).await;
    assert!(err["message"].as_str().unwrap().contains("Your card was declined."), "{err}");
    fake.script("/v1/payment_intents", stripe_error(400, "invalid_request_error", "Amount must be at least $0.50 usd"));
    let err = assert_error(open_payment(app, &shop.customer.access, order).await, 422, &path).await;
    assert!(err["message"].as_str().unwrap().contains("Amount must be at least"), "{err}");
    assert_eq!(fake.seen("/v1/payment_intents").len(), 2, "a refusal is not retried");
    assert_eq!(payments_in_db(app, order).await, 0);
    assert_eq!(order_status(app, &shop.customer, order).await, "pending");

    let payment = open_payment_ok(app, &shop.customer, order).await;
    assert_eq!(payment["status"], "pending");
    assert_eq!(fake.intents().len(), 1);

    // The same database served by an instance whose Stripe address has nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut vars = stripe_config(&fake);
    vars.retain(|(k, _)| *k != "STRIPE_API_BASE");
    vars.push(("STRIPE_API_BASE", format!("http://127.0.0.1:{closed}")));
    let down = app.spawn_sibling(&borrowed(&vars)).await;
    let (order, _) = priced_order(&down, &shop.customer, &[(shop.basil, 1)]).await;
    let path = format!("/api/v1/orders/{order}/payments");
    assert_error(open_payment(&down, &shop.customer.access, order).await, 503, &path).await;
    assert_eq!(payments_in_db(app, order).await, 0);
    assert_eq!(order_status(app, &shop.customer, order).await, "pending");
}

// ---------------------------------------------------------------------------------------------
// Stripe webhooks
// ---------------------------------------------------------------------------------------------

/// Every way a signature can be wrong is a 400 that changes nothing; several `v1` values where
/// one is right are accepted; a replay and a redelivery of an applied event are `duplicate`;
/// `payment_webhook_events` counts each outcome.
#[tokio::test]
async fn webhook_signatures_are_checked_and_each_event_applies_once() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let event = succeeded(&p.intent, p.total);
    let t = now();

    let wrong_secret = format!("t={t},v1={}", sign("whsec_other", t, &event));
    let stale = signature(t - 400, &event);
    let future = signature(t + 400, &event);
    let good = signature(t, &event);
    let altered = event.replace(&format!("\"amount\":{}", p.total), &format!("\"amount\":{}", p.total + 1));
    assert_ne!(altered, event);
    let no_timestamp = format!("v1={}", sign(WEBHOOK_SECRET, t, &event));
    let rejected: [(&str, &str, Option<&str>); 6] = [
        ("signed with another secret", &event, Some(&wrong_secret)),
        ("signed 400 s ago", &event, Some(&stale)),
        ("signed 400 s in the future", &event, Some(&future)),
        ("without the header", &event, None),
        ("body changed after signing", &altered, Some(&good)),
        ("no timestamp", &event, Some(&no_timestamp)),
    ];
    for (why, body, sig) in rejected {
        let err = assert_error(deliver(app, body, sig).await, 400, STRIPE_HOOK).await;
        assert!(err["message"].as_str().is_some(), "{why}: {err}");
        assert_eq!(order_status(app, &shop.customer, p.order).await, "pending", "{why}");
    }
    let pid = payment_id(&p.payment);
    let before = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(before["status"], "pending");
    assert_eq!(steps(&before), pairs(&[("initiate", "pending")]));

    // A secret being rolled: the first v1 is from another secret, the second is right.
    let t = now();
    let rolled = format!("t={t},v1={},v1={}", sign("whsec_old", t, &event), sign(WEBHOOK_SECRET, t, &event));
    let ack = json_of(deliver(app, &event, Some(&rolled)).await, 200).await;
    assert_eq!(ack["outcome"], "applied", "{ack}");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");
    let paid = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(paid["status"], "completed", "{paid}");
    assert_eq!(steps(&paid), pairs(&[("initiate", "pending"), ("payment", "succeeded")]));

    // The very same request again, then the same event re-signed later: applied once.
    let ack = json_of(deliver(app, &event, Some(&rolled)).await, 200).await;
    assert_eq!(ack["outcome"], "duplicate", "{ack}");
    assert_eq!(deliver_signed(app, &event).await, "duplicate");
    let after = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(steps(&after), steps(&paid), "{after}");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("payment_webhook_events"), "{text}");
    let count =
        |outcome| metric(&text, "payment_webhook_events_total", &[("provider", "stripe"), ("outcome", outcome)]);
    assert_eq!(count("bad_signature"), rejected.len() as f64, "{text}");
    assert_eq!(count("applied"), 1.0, "{text}");
    assert_eq!(count("duplicate"), 2.0, "{text}");
}

/// A failed payment leaves the order pending and can still succeed later; events for intents
/// we do not know, and event types we do not act on, are acknowledged as `ignored`.
#[tokio::test]
async fn webhook_events_move_the_payment_and_the_order() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let pid = payment_id(&p.payment);

    let failed = intent_event(&event_id(), "payment_intent.payment_failed", &p.intent, p.total, 0, "usd");
    assert_eq!(deliver_signed(app, &failed).await, "applied");
    assert_eq!(payment_of(app, &shop.customer.access, &pid).await["status"], "failed");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "pending");
    // The customer tries again with the same payment.
    let again = open_payment_ok(app, &shop.customer, p.order).await;
    assert_eq!(again["paymentId"], p.payment["paymentId"], "{again}");
    assert_eq!(fake.intents().len(), 1);

    let unknown = succeeded("pi_unknown000000000000000", p.total);
    assert_eq!(deliver_signed(app, &unknown).await, "ignored");
    let other_type = json!({"id": event_id(), "type": "customer.created", "data": {"object": {"id": "cus_123"}}});
    assert_eq!(deliver_signed(app, &other_type.to_string()).await, "ignored");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "pending");

    assert_eq!(deliver_signed(app, &succeeded(&p.intent, p.total)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");
    let done = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(steps(&done), pairs(&[("initiate", "pending"), ("payment", "failed"), ("payment", "succeeded")]));
}

/// Less money than the order total (or another currency) does not pay the order; the mismatch
/// is recorded. The right amount afterwards does.
#[tokio::test]
async fn a_payment_for_the_wrong_amount_does_not_pay_the_order() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let pid = payment_id(&p.payment);

    let short = intent_event(&event_id(), "payment_intent.succeeded", &p.intent, p.total, p.total - 100, "usd");
    assert_eq!(deliver_signed(app, &short).await, "applied");
    let euros = intent_event(&event_id(), "payment_intent.succeeded", &p.intent, p.total, p.total, "eur");
    assert_eq!(deliver_signed(app, &euros).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "pending");
    let payment = payment_of(app, &shop.customer.access, &pid).await;
    assert_ne!(payment["status"], "completed", "{payment}");
    let mismatches: Vec<_> = payment["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["transactionType"] == "amount_mismatch")
        .collect();
    assert_eq!(mismatches.len(), 2, "{payment}");
    assert_eq!(mismatches[0]["amount"], money(p.total - 100), "{payment}");

    assert_eq!(deliver_signed(app, &succeeded(&p.intent, p.total)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");
}

/// The customer cancels the order while paying; Stripe can no longer cancel the intent (it has
/// just succeeded) and then reports the success. The order stays cancelled, its stock is not
/// taken again, and the payment is recorded as needing a refund so the money goes back.
#[tokio::test]
async fn a_payment_that_succeeds_after_the_order_was_cancelled_is_flagged_for_refund() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let pid = payment_id(&p.payment);
    let cancel_path = format!("/v1/payment_intents/{}/cancel", p.intent);
    fake.script(
        &cancel_path,
        stripe_error(
            400,
            "invalid_request_error",
            "You cannot cancel this PaymentIntent because it has a status of succeeded.",
        ),
    );
    let res = authed(app, Method::POST, &format!("/api/v1/orders/{}/cancel", p.order), &shop.customer.access)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 200).await["status"], "cancelled");
    assert_eq!(fake.seen(&cancel_path).len(), 1);
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock);

    assert_eq!(deliver_signed(app, &succeeded(&p.intent, p.total)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "cancelled");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock);
    assert_eq!(stock_of(app, shop.basil).await, shop.basil.stock);
    let payment = payment_of(app, &shop.admin.access, &pid).await;
    assert!(
        payment["transactions"].as_array().unwrap().iter().any(|t| t["status"] == "needs_refund"),
        "money was taken for a cancelled order and nothing says it must go back: {payment}"
    );
}

/// `charge.refunded` (a refund made in Stripe's dashboard) refunds a paid order and returns its
/// stock; a partial refund notes the amount and leaves the order paid.
#[tokio::test]
async fn a_charge_refunded_event_refunds_the_order_and_returns_stock() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let pid = payment_id(&p.payment);
    assert_eq!(deliver_signed(app, &succeeded(&p.intent, p.total)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock - 2);
    assert_eq!(stock_of(app, shop.basil).await, shop.basil.stock - 3);

    assert_eq!(deliver_signed(app, &charge_refunded(&p.intent, 100, false)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock - 2);

    assert_eq!(deliver_signed(app, &charge_refunded(&p.intent, p.total, true)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "refunded");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock);
    assert_eq!(stock_of(app, shop.basil).await, shop.basil.stock);
    let payment = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(payment["status"], "refunded", "{payment}");
    let refunds: Vec<_> = steps(&payment).into_iter().filter(|(kind, _)| kind == "refund").collect();
    assert_eq!(refunds, pairs(&[("refund", "partial"), ("refund", "succeeded")]), "{payment}");
    assert!(fake.refunds().is_empty(), "a refund Stripe reported is not asked for again");
}

/// Webhooks answer 404 for a provider without webhooks (`paypal`), and for Stripe when no
/// webhook secret is configured, even for a correctly signed event.
#[tokio::test]
async fn webhooks_need_a_configured_provider() {
    let fake = FakeStripe::start().await;
    let vars = stripe_config(&fake);
    let app = spawn_app_with(&borrowed(&vars), Router::new()).await;
    let body = succeeded("pi_whatever00000000000000", 1000);
    let sig = signature(now(), &body);
    let paypal = "/api/v1/webhooks/payments/paypal";
    assert_error(deliver_to(&app, "paypal", &body, Some(&sig)).await, 404, paypal).await;
    assert_eq!(json_of(deliver(&app, &body, Some(&sig)).await, 200).await["outcome"], "ignored");

    let no_secret: Vec<_> = vars.into_iter().filter(|(k, _)| *k != "STRIPE_WEBHOOK_SECRET").collect();
    let without = app.spawn_sibling(&borrowed(&no_secret)).await;
    let body = succeeded("pi_whatever00000000000000", 1000);
    assert_error(deliver(&without, &body, Some(&signature(now(), &body))).await, 404, STRIPE_HOOK).await;
}

// ---------------------------------------------------------------------------------------------
// Refunds and cancels through Stripe
// ---------------------------------------------------------------------------------------------

/// Only an admin refunds; the refund is asked of Stripe for the payment's intent under an
/// idempotency key, the order becomes `refunded` and the stock comes back exactly once (also
/// when Stripe then reports the refund by webhook).
#[tokio::test]
async fn an_admin_refunds_a_paid_order_through_stripe() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let path = format!("/api/v1/orders/{}/refund", p.order);
    let refund = |token: &str| authed(app, Method::POST, &path, token).send();

    // A pending order cannot be refunded.
    assert_error(refund(&shop.admin.access).await.unwrap(), 409, &path).await;
    assert_eq!(deliver_signed(app, &succeeded(&p.intent, p.total)).await, "applied");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock - 2);

    assert_error(app.client.post(app.url(&path)).send().await.unwrap(), 401, &path).await;
    assert_error(refund(&shop.customer.access).await.unwrap(), 403, &path).await;
    let vendor = user_with_role(app, "vendor", "VENDOR").await;
    assert_error(refund(&vendor.access).await.unwrap(), 403, &path).await;
    let unknown = format!("/api/v1/orders/{}/refund", Uuid::now_v7());
    let res = authed(app, Method::POST, &unknown, &shop.admin.access).send().await.unwrap();
    assert_error(res, 404, &unknown).await;
    assert_eq!(fake.all_seen(), 1, "only the PaymentIntent reached Stripe so far");

    // Stripe refusing the refund: 422, still paid, stock untouched.
    fake.script("/v1/refunds", stripe_error(400, "invalid_request_error", "Charge has already been refunded."));
    assert_error(refund(&shop.admin.access).await.unwrap(), 422, &path).await;
    assert_eq!(order_status(app, &shop.customer, p.order).await, "paid");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock - 2);

    let out = json_of(refund(&shop.admin.access).await.unwrap(), 200).await;
    assert_eq!(out["status"], "refunded", "{out}");
    assert_eq!(out["id"], p.order.to_string(), "{out}");
    let calls = fake.seen("/v1/refunds");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let call = &calls[1];
    assert_eq!(call.param("payment_intent"), Some(p.intent.as_str()), "{call:?}");
    assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {SECRET_KEY}").as_str()));
    assert!(call.idempotency_key.as_deref().is_some_and(|k| !k.is_empty()), "{call:?}");
    assert_eq!(fake.refunds(), vec![p.intent.clone()]);
    assert_eq!(order_status(app, &shop.customer, p.order).await, "refunded");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock);
    assert_eq!(stock_of(app, shop.basil).await, shop.basil.stock);
    let payment = payment_of(app, &shop.customer.access, &payment_id(&p.payment)).await;
    assert_eq!(payment["status"], "refunded", "{payment}");

    // Refunding again is a conflict and asks Stripe for nothing.
    assert_error(refund(&shop.admin.access).await.unwrap(), 409, &path).await;
    assert_eq!(fake.seen("/v1/refunds").len(), 2);
    // Stripe then reports its refund: acknowledged, and the stock is not returned twice.
    assert_eq!(deliver_signed(app, &charge_refunded(&p.intent, p.total, true)).await, "applied");
    assert_eq!(order_status(app, &shop.customer, p.order).await, "refunded");
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock);
    assert_eq!(stock_of(app, shop.basil).await, shop.basil.stock);
}

/// Cancelling an order with an open Stripe payment cancels the payment and its intent at
/// Stripe; the cancelled order can no longer be paid.
#[tokio::test]
async fn cancelling_an_order_cancels_its_stripe_intent() {
    let (shop, fake) = stripe_shop().await;
    let app = &shop.app;
    let p = open_stripe_payment(&shop, &fake).await;
    let res = authed(app, Method::POST, &format!("/api/v1/orders/{}/cancel", p.order), &shop.customer.access)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 200).await["status"], "cancelled");

    let calls = fake.seen(&format!("/v1/payment_intents/{}/cancel", p.intent));
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].authorization.as_deref(), Some(format!("Bearer {SECRET_KEY}").as_str()));
    assert!(calls[0].idempotency_key.as_deref().is_some_and(|k| !k.is_empty()), "{:?}", calls[0]);
    assert_eq!(fake.cancelled(), vec![p.intent.clone()]);
    let payment = payment_of(app, &shop.customer.access, &payment_id(&p.payment)).await;
    assert_eq!(payment["status"], "cancelled", "{payment}");
    assert_eq!(steps(&payment).last().map(|(k, s)| (k.as_str(), s.as_str())), Some(("cancel", "cancelled")));
    assert_eq!(stock_of(app, shop.apple).await, shop.apple.stock);

    let path = format!("/api/v1/orders/{}/payments", p.order);
    assert_error(open_payment(app, &shop.customer.access, p.order).await, 409, &path).await;
    assert_eq!(fake.intents().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Sandbox
// ---------------------------------------------------------------------------------------------

/// The default provider: a payment is confirmed with its client secret by its owner, fails or
/// succeeds through the same event path as Stripe's webhooks, and is confirmed at most once.
#[tokio::test]
async fn sandbox_payments_are_confirmed_with_the_client_secret() {
    let shop = shop(spawn_app().await).await;
    let app = &shop.app;
    let (order, total) = priced_order(app, &shop.customer, &[(shop.apple, 1), (shop.basil, 1)]).await;
    let payment = open_payment_ok(app, &shop.customer, order).await;
    assert_eq!(payment["provider"], "sandbox", "{payment}");
    assert_eq!(payment["status"], "pending", "{payment}");
    assert_eq!(payment["amount"], money(total), "{payment}");
    let secret = payment["clientSecret"].as_str().expect("clientSecret").to_string();
    let pid = payment_id(&payment);

    let own = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(own["clientSecret"], secret.as_str());
    let by_admin = payment_of(app, &shop.admin.access, &pid).await;
    assert!(by_admin.get("clientSecret").is_none_or(Value::is_null), "{by_admin}");
    assert!(!by_admin.to_string().contains(&secret), "{by_admin}");
    let other = register(app, "other").await;
    let get_path = format!("/api/v1/payments/{pid}");
    assert_error(get_authed(app, &get_path, &other.access).await, 404, &get_path).await;

    let path = format!("/api/v1/payments/{pid}/sandbox-confirm");
    let confirm = |token: &str, body: Value| authed(app, Method::POST, &path, token).json(&body).send();
    let err = assert_error(
        confirm(&shop.customer.access, json!({"clientSecret": format!("{secret}x")})).await.unwrap(),
        400,
        &path,
    )
    .await;
    assert_eq!(err["details"][0]["field"], "clientSecret", "{err}");
    let res = confirm(&shop.customer.access, json!({"clientSecret": secret, "outcome": "maybe"})).await.unwrap();
    assert_error(res, 400, &path).await;
    assert_error(confirm(&other.access, json!({"clientSecret": secret})).await.unwrap(), 404, &path).await;
    assert_error(confirm(&shop.admin.access, json!({"clientSecret": secret})).await.unwrap(), 404, &path).await;
    let res = app.client.post(app.url(&path)).json(&json!({"clientSecret": secret})).send().await.unwrap();
    assert_error(res, 401, &path).await;
    assert_eq!(payment_of(app, &shop.customer.access, &pid).await["status"], "pending");
    assert_eq!(order_status(app, &shop.customer, order).await, "pending");

    let failed = json_of(
        confirm(&shop.customer.access, json!({"clientSecret": secret, "outcome": "failed"})).await.unwrap(),
        200,
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(order_status(app, &shop.customer, order).await, "pending");

    let done = json_of(
        confirm(&shop.customer.access, json!({"clientSecret": secret, "outcome": "succeeded"})).await.unwrap(),
        200,
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(order_status(app, &shop.customer, order).await, "paid");
    let res = confirm(&shop.customer.access, json!({"clientSecret": secret})).await.unwrap();
    assert_error(res, 409, &path).await;
    let history = payment_of(app, &shop.customer.access, &pid).await;
    assert_eq!(steps(&history), pairs(&[("initiate", "pending"), ("payment", "failed"), ("payment", "succeeded")]));

    // No webhooks without Stripe configured.
    let body = succeeded("sb_whatever", total);
    let sig = signature(now(), &body);
    for provider in ["sandbox", "stripe"] {
        let hook = format!("/api/v1/webhooks/payments/{provider}");
        assert_error(deliver_to(app, provider, &body, Some(&sig)).await, 404, &hook).await;
    }
}
