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

mod fake_stripe;
mod refunds_and_sandbox;
mod stripe;
mod webhooks;

use axum::Router;
use chrono::Utc;
use hmac::{Hmac, Mac};
use mash::shop::entity::payment as payment_row;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use self::fake_stripe::FakeStripe;
use crate::helpers::{
    TestApp,
    accounts::{Account, admin, get_authed, json_of, register},
    shop::{create_category, create_product, money, open_payment, order_ok, product_body},
    spawn_app_with,
};

const SECRET_KEY: &str = "sk_test_123";
const WEBHOOK_SECRET: &str = "whsec_test";

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
