//! CONTRACT.md "Shop", the catalogue: categories and products.
//!
//! - `GET /products` filters, sorts and pages exactly as an independent computation over the
//!   products the test created says it should (ties broken by id in the same direction).
//! - Money is a two-place decimal string both ways; anything else is a 400 naming the field.
//! - Search is a literal, case-insensitive substring of the name or the description.
//! - Reads are public and cached, and a write (also one made by an order, or on another instance
//!   over Redis) shows at once.
//! - Who may write what (anonymous, customer, grower, two vendors, admin), bad input, stock
//!   adjustments, and categories that still hold products.

mod cache;
mod listing;
mod reads;
mod writes;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, json_of},
    assert_error, detail_fields,
    shop::{create_product, product_body},
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const PRODUCTS: &str = "/api/v1/products";
const CATEGORIES: &str = "/api/v1/categories";

/// A request, as `token`'s owner or anonymous, with a JSON body when given.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request failed")
}

async fn post(app: &TestApp, path: &str, who: &Account, body: Value) -> reqwest::Response {
    call(app, Method::POST, path, Some(&who.access), Some(body)).await
}

async fn patch(app: &TestApp, path: &str, who: &Account, body: Value) -> reqwest::Response {
    call(app, Method::PATCH, path, Some(&who.access), Some(body)).await
}

async fn delete(app: &TestApp, path: &str, who: &Account) -> reqwest::Response {
    call(app, Method::DELETE, path, Some(&who.access), None).await
}

/// An anonymous `GET` with query parameters.
async fn get_query(app: &TestApp, path: &str, params: &[(&str, String)]) -> reqwest::Response {
    let url = url::Url::parse_with_params(&app.url(path), params).expect("a URL");
    app.client.get(url).send().await.expect("request failed")
}

/// An anonymous `GET`, 200 asserted.
async fn read(app: &TestApp, path: &str) -> Value {
    json_of(app.get(path).await, 200).await
}

/// An anonymous `GET /products` with these parameters, 200 asserted.
async fn list(app: &TestApp, params: &[(&str, String)]) -> Value {
    json_of(get_query(app, PRODUCTS, params).await, 200).await
}

fn product_path(id: Uuid) -> String {
    format!("{PRODUCTS}/{id}")
}

fn category_path(id: Uuid) -> String {
    format!("{CATEGORIES}/{id}")
}

fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).parse().expect("id is a UUID")
}

/// The ids of a list answer's `data`, in order.
fn ids(list: &Value) -> Vec<Uuid> {
    list["data"].as_array().unwrap_or_else(|| panic!("no data in {list}")).iter().map(id_of).collect()
}

/// Asserts a 400 in the error shape whose `details` name `field`.
async fn assert_bad_field(res: reqwest::Response, path: &str, field: &str) -> Value {
    let body = assert_error(res, 400, path).await;
    assert!(detail_fields(&body).iter().any(|f| f == field), "expected details naming {field}: {body}");
    body
}

/// A product with defaults for everything but its name and stock.
async fn simple_product(app: &TestApp, by: &Account, category: Uuid, name: &str, price: &str, stock: i64) -> Uuid {
    let sku = format!("SKU-{}", Uuid::now_v7().simple());
    id_of(&create_product(app, by, product_body(&sku, name, price, stock, category)).await)
}

/// What the test created, as it knows it.
#[derive(Debug, Clone)]
struct Made {
    id: Uuid,
    name: String,
    description: Option<String>,
    price: i64,
    stock: i64,
    category: Uuid,
    created_at: DateTime<Utc>,
}

fn matches_search(m: &Made, term: &str) -> bool {
    let term = term.to_lowercase();
    m.name.to_lowercase().contains(&term) || m.description.as_ref().is_some_and(|d| d.to_lowercase().contains(&term))
}
