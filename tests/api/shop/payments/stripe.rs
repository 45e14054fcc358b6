//! Opening a payment with Stripe: one PaymentIntent for the order total, simultaneous requests
//! sharing it, server errors retried under the same key, refusals as 422 and an unreachable
//! Stripe as 503.

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    accounts::{authed, get_authed, json_of, register, user_with_role},
    assert_error,
    shop::{money, open_payment},
};

use super::{
    SECRET_KEY, borrowed, fake_stripe::stripe_error, intent_for, open_payment_ok, order_status, pairs, payment_id,
    payment_of, payments_in_db, priced_order, steps, stripe_config, stripe_shop,
};

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
