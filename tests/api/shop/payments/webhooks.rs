//! Stripe webhooks: signatures checked, each event applied once, and what each event does to the
//! payment, the order and the stock (a wrong amount, a cancelled order, a refund); none without
//! a configured provider.

use axum::Router;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    accounts::{authed, json_of},
    assert_error,
    shop::money,
    spawn_app_with,
};

use super::{
    STRIPE_HOOK, WEBHOOK_SECRET, borrowed, charge_refunded, deliver, deliver_signed, deliver_to, event_id,
    fake_stripe::{FakeStripe, stripe_error},
    intent_event, metric, now, open_payment_ok, open_stripe_payment, order_status, pairs, payment_id, payment_of, sign,
    signature, steps, stock_of, stripe_config, stripe_shop, succeeded,
};

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
