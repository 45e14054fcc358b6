//! CONTRACT.md "Shop", the order half: `POST /orders` with prices taken from the catalogue
//! (never from the client), stock taken in the same transaction (409 and nothing changed when
//! short, never oversold under concurrency, no deadlock when two orders list the same products
//! in opposite order), `Idempotency-Key` (replay, 422 on another body, per-user scope, one
//! execution under concurrency, refused requests not remembered, length limits, expiry and
//! pruning), cancel with restock, the status machine through sandbox payments, fulfilment and
//! refunds, listing and visibility per caller, and bad input.
//!
//! Products are created through the API by an admin; orders are placed by customers. Stock is
//! checked both through `GET /products/{id}` and directly in the database.

mod concurrency;
mod idempotency;
mod lifecycle;
mod placing;

use mash::shop::entity::{order as order_row, product as product_row};
use reqwest::Method;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, json_of},
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Stock as the public catalogue shows it.
async fn api_stock(app: &TestApp, id: Uuid) -> i64 {
    let body = json_of(app.get(&format!("/api/v1/products/{id}")).await, 200).await;
    body["stock"].as_i64().unwrap_or_else(|| panic!("stock: {body}"))
}

/// Stock as the database holds it.
async fn db_stock(app: &TestApp, id: Uuid) -> i64 {
    product_row::Entity::find_by_id(id).one(&app.state.db).await.unwrap().expect("product row").stock
}

/// Asserts the stock of a product through the API and in the database.
async fn assert_stock(app: &TestApp, id: Uuid, expected: i64) {
    assert_eq!(api_stock(app, id).await, expected, "stock of {id} via GET /products/{{id}}");
    assert_eq!(db_stock(app, id).await, expected, "stock of {id} in the database");
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("id: {v}")).to_string()
}

async fn post_as(app: &TestApp, who: &Account, path: &str) -> reqwest::Response {
    authed(app, Method::POST, path, &who.access).send().await.unwrap()
}

async fn order_rows(app: &TestApp) -> u64 {
    order_row::Entity::find().count(&app.state.db).await.unwrap()
}

/// Sends every `(token, body)` at once, each on its own task; returns (status, body) in order.
async fn all_at_once(app: &TestApp, requests: Vec<(String, Value, Option<String>)>) -> Vec<(u16, Value, bool)> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(token, body, key)| {
            let client = app.client.clone();
            let url = app.url("/api/v1/orders");
            tokio::spawn(async move {
                let mut req = client.post(url).bearer_auth(token).json(&body);
                if let Some(k) = key {
                    req = req.header("idempotency-key", k);
                }
                let res = req.send().await.expect("request failed");
                let status = res.status().as_u16();
                let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (status, body, replayed)
            })
        })
        .collect();
    futures_util::future::join_all(tasks).await.into_iter().map(|r| r.expect("task panicked")).collect()
}
