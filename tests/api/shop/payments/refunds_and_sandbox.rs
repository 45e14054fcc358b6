//! Refunds by an admin and cancels through Stripe, and the sandbox provider with its
//! `sandbox-confirm`.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{authed, get_authed, json_of, register, user_with_role},
    assert_error,
    shop::{money, open_payment},
    spawn_app,
};

use super::{
    SECRET_KEY, charge_refunded, deliver_signed, deliver_to, fake_stripe::stripe_error, now, open_payment_ok,
    open_stripe_payment, order_status, pairs, payment_id, payment_of, priced_order, shop, signature, steps, stock_of,
    stripe_shop, succeeded,
};

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
