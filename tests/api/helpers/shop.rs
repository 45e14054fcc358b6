//! The shop as the tests stock it and buy from it: money as the contract spells it (computed
//! here, apart from the application's own `Money`), categories and products made through the
//! API, orders, and payments through the sandbox provider.

use std::fmt::Display;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, admin, authed, get_authed, json_of},
};

/// Formats integer cents the way the contract spells money: `"19.90"`. Written here, apart
/// from the application's own `Money`, so the tests check the server against an independent
/// computation.
pub fn money(cents: i64) -> String {
    assert!(cents >= 0);
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Creates a category named `name` as `by` (201 asserted); its id.
pub async fn create_category(app: &TestApp, by: &Account, name: &str) -> Uuid {
    let res = authed(app, Method::POST, "/api/v1/categories", &by.access).json(&json!({ "name": name })).send().await;
    let body = json_of(res.expect("request failed"), 201).await;
    assert_eq!(body["name"], name, "{body}");
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).parse().expect("id is a UUID")
}

pub fn product_body(sku: &str, name: &str, price: &str, stock: i64, category: Uuid) -> Value {
    json!({ "sku": sku, "name": name, "price": price, "stock": stock, "categoryId": category })
}

/// Creates a product as `by` (201 asserted) and returns the answer.
pub async fn create_product(app: &TestApp, by: &Account, body: Value) -> Value {
    let res = authed(app, Method::POST, "/api/v1/products", &by.access).json(&body).send().await;
    json_of(res.expect("request failed"), 201).await
}

/// An admin and a category to put products in.
pub struct Shop {
    pub admin: Account,
    pub category_id: Uuid,
}

/// A shop of a fresh admin.
pub async fn open_shop(app: &TestApp) -> Shop {
    let admin = admin(app).await;
    open_shop_by(app, &admin).await
}

/// A shop of an existing admin, with a category of its own.
pub async fn open_shop_by(app: &TestApp, admin: &Account) -> Shop {
    let category_id = create_category(app, admin, &format!("Seeds {}", Uuid::now_v7().simple())).await;
    Shop { admin: admin.clone(), category_id }
}

/// A product created by the shop's admin with the price given as a decimal string.
pub async fn product(app: &TestApp, shop: &Shop, price: &str, stock: i64) -> Uuid {
    let sku = format!("SKU-{}", Uuid::now_v7().simple());
    let body = product_body(&sku, &format!("Tomato seeds {sku}"), price, stock, shop.category_id);
    let body = create_product(app, &shop.admin, body).await;
    assert_eq!(body["stock"], stock, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// The `items` of an order: `(product, quantity)` each.
pub fn items(list: &[(Uuid, i64)]) -> Value {
    Value::Array(list.iter().map(|(id, q)| json!({ "productId": id, "quantity": q })).collect())
}

/// `POST /orders` with a JSON body and, optionally, an `Idempotency-Key`.
pub async fn place(app: &TestApp, token: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = authed(app, Method::POST, "/api/v1/orders", token).json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.expect("request failed")
}

/// Places an order of these items (201 asserted) and returns it.
pub async fn order_ok(app: &TestApp, who: &Account, list: &[(Uuid, i64)]) -> Value {
    json_of(place(app, &who.access, &json!({ "items": items(list) }), None).await, 201).await
}

/// `POST /orders/{id}/payments`: opens a payment for an order.
pub async fn open_payment(app: &TestApp, token: &str, order: impl Display) -> reqwest::Response {
    authed(app, Method::POST, &format!("/api/v1/orders/{order}/payments"), token).send().await.unwrap()
}

/// Pays a pending order with the sandbox provider (the owner opens the payment and confirms
/// it with its client secret) and asserts the order is now `paid`.
pub async fn pay(app: &TestApp, owner: &Account, order_id: &str) {
    let payment = json_of(open_payment(app, &owner.access, order_id).await, 201).await;
    let payment_id = payment["paymentId"].as_str().unwrap_or_else(|| panic!("paymentId: {payment}"));
    let secret = payment["clientSecret"].as_str().unwrap_or_else(|| panic!("clientSecret: {payment}"));
    let res = authed(app, Method::POST, &format!("/api/v1/payments/{payment_id}/sandbox-confirm"), &owner.access)
        .json(&json!({ "clientSecret": secret }))
        .send()
        .await
        .unwrap();
    let confirmed = json_of(res, 200).await;
    assert_eq!(confirmed["status"], "completed", "{confirmed}");
    let o = json_of(get_authed(app, &format!("/api/v1/orders/{order_id}"), &owner.access).await, 200).await;
    assert_eq!(o["status"], "paid", "{o}");
}
