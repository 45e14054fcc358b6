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

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use mash::{
    idempotency::entity as idempotency_key,
    shop::entity::{order as order_row, order_item as order_item_row, product as product_row},
};
use reqwest::Method;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, admin, authed, get_authed, json_of, register, user_with_role},
    assert_error, detail_fields, ids,
    shop::{create_category, create_product, items, money, order_ok, pay, place, product_body},
    spawn_app, spawn_app_with,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An admin and a category to put products in.
struct Shop {
    admin: Account,
    category_id: Uuid,
}

async fn open_shop(app: &TestApp) -> Shop {
    let admin = admin(app).await;
    let category_id = create_category(app, &admin, &format!("Seeds {}", Uuid::now_v7().simple())).await;
    Shop { admin, category_id }
}

/// Parses a money string from a response into cents, insisting on exactly two decimals.
fn cents_of(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("money must be a string, got {v}"));
    let (whole, frac) = s.split_once('.').unwrap_or_else(|| panic!("two places expected: {s:?}"));
    assert!(!whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
    assert!(frac.len() == 2 && frac.bytes().all(|b| b.is_ascii_digit()), "two places expected: {s:?}");
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// A product created by the shop's admin with the price given as a decimal string.
async fn product(app: &TestApp, shop: &Shop, price: &str, stock: i64) -> Uuid {
    let sku = format!("SKU-{}", Uuid::now_v7().simple());
    let body = product_body(&sku, &format!("Tomato seeds {sku}"), price, stock, shop.category_id);
    let body = create_product(app, &shop.admin, body).await;
    assert_eq!(body["stock"], stock, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

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

/// Sets `created_at` of one idempotency key `hours` into the past, with a raw statement.
async fn backdate_key(app: &TestApp, user_id: Uuid, key: &str, hours: i64) {
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => "UPDATE idempotency_keys SET created_at = $1 WHERE user_id = $2 AND \"key\" = $3",
        _ => "UPDATE idempotency_keys SET created_at = ?1 WHERE user_id = ?2 AND \"key\" = ?3",
    };
    let when = Utc::now() - chrono::Duration::hours(hours);
    let res = db
        .execute_raw(Statement::from_sql_and_values(backend, sql, [when.into(), user_id.into(), key.into()]))
        .await
        .expect("backdate idempotency key");
    assert_eq!(res.rows_affected(), 1, "exactly one key row for {key:?}");
}

async fn key_exists(app: &TestApp, user_id: Uuid, key: &str) -> bool {
    idempotency_key::Entity::find_by_id((user_id, key.to_string())).one(&app.state.db).await.unwrap().is_some()
}

// ---------------------------------------------------------------------------------------------
// Prices and stock
// ---------------------------------------------------------------------------------------------

/// Whatever prices or totals the client sends, the order is priced from the catalogue, in
/// integer cents, and reported as two-place strings.
#[tokio::test]
async fn totals_come_from_the_catalogue_not_the_client() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    // (price as created, price in cents, stock, quantity ordered). 0.10 * 7 and 0.05 are the
    // amounts a float would get wrong; "19.9" is given with one place on purpose.
    let lines = [("19.9", 1990_i64, 10_i64, 3_i64), ("0.10", 10, 50, 7), ("0.05", 5, 1, 1), ("1234.56", 123_456, 4, 2)];
    let mut ids = Vec::new();
    for (price, _, stock, _) in lines {
        ids.push(product(&app, &shop, price, stock).await);
    }
    let customer = register(&app, "buyer").await;
    let sent_items: Vec<Value> = ids
        .iter()
        .zip(lines)
        .map(|(id, (_, _, _, q))| {
            json!({ "productId": id, "quantity": q, "unitPrice": "0.01", "price": "0.01", "lineTotal": "0.01" })
        })
        .collect();
    let address = json!({ "line1": "1 Greenhouse Way", "city": "Leiden", "country": "NL" });
    let body = json!({
        "items": sent_items, "total": "0.01", "currency": "EUR", "status": "paid",
        "userId": Uuid::now_v7(), "shippingAddress": address,
    });
    let order = json_of(place(&app, &customer.access, &body, None).await, 201).await;

    assert_eq!(order["status"], "pending", "{order}");
    assert_eq!(order["currency"], "USD", "{order}");
    assert_eq!(order["userId"], customer.id.to_string(), "{order}");
    assert_eq!(order["shippingAddress"], address, "{order}");
    chrono::DateTime::parse_from_rfc3339(order["createdAt"].as_str().unwrap()).expect("RFC 3339 createdAt");
    let got = order["items"].as_array().expect("items");
    assert_eq!(got.len(), lines.len(), "{order}");
    let mut expected_total = 0_i64;
    for (id, (_, cents, _, q)) in ids.iter().zip(lines) {
        let item = got.iter().find(|i| i["productId"] == id.to_string()).unwrap_or_else(|| panic!("{id}: {order}"));
        assert_eq!(item["quantity"], q, "{item}");
        assert_eq!(item["unitPrice"], money(cents), "{item}");
        assert_eq!(item["lineTotal"], money(cents * q), "{item}");
        assert_eq!(cents_of(&item["unitPrice"]) * q, cents_of(&item["lineTotal"]));
        expected_total += cents * q;
    }
    assert_eq!(expected_total, 3 * 1990 + 7 * 10 + 5 + 2 * 123_456);
    assert_eq!(order["total"], money(expected_total), "{order}");
    assert_eq!(cents_of(&order["total"]), expected_total);

    // The stored order agrees, and reading it back gives the same prices.
    let id: Uuid = id_of(&order).parse().unwrap();
    let row = order_row::Entity::find_by_id(id).one(&app.state.db).await.unwrap().expect("order row");
    assert_eq!(row.total_minor, expected_total);
    assert_eq!(row.user_id, customer.id);
    let again = json_of(get_authed(&app, &format!("/api/v1/orders/{id}"), &customer.access).await, 200).await;
    assert_eq!(again["total"], money(expected_total), "{again}");
    for item in again["items"].as_array().unwrap() {
        let pid: Uuid = item["productId"].as_str().unwrap().parse().unwrap();
        let (_, cents, _, q) = lines[ids.iter().position(|p| *p == pid).unwrap()];
        assert_eq!(item["unitPrice"], money(cents), "{item}");
        assert_eq!(item["quantity"], q, "{item}");
    }
    // Stock went down by exactly the quantities.
    for (id, (_, _, stock, q)) in ids.iter().zip(lines) {
        assert_stock(&app, *id, stock - q).await;
    }

    // A later price change does not touch the order already placed.
    let res = authed(&app, Method::PATCH, &format!("/api/v1/products/{}", ids[0]), &shop.admin.access)
        .json(&json!({ "price": "99.00" }))
        .send()
        .await
        .unwrap();
    json_of(res, 200).await;
    let again = json_of(get_authed(&app, &format!("/api/v1/orders/{id}"), &customer.access).await, 200).await;
    assert_eq!(again["total"], money(expected_total), "{again}");
}

/// One short item refuses the whole order: 409 naming that item, and neither product's stock
/// moved, and no order exists.
#[tokio::test]
async fn short_stock_is_409_and_nothing_changes() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let plenty = product(&app, &shop, "4.00", 5).await;
    let scarce = product(&app, &shop, "2.50", 2).await;
    let customer = register(&app, "short").await;

    let res = place(&app, &customer.access, &json!({ "items": items(&[(plenty, 3), (scarce, 5)]) }), None).await;
    let err = assert_error(res, 409, "/api/v1/orders").await;
    assert_eq!(detail_fields(&err), vec!["items[1].quantity".to_string()], "{err}");

    assert_stock(&app, plenty, 5).await;
    assert_stock(&app, scarce, 2).await;
    let list = json_of(get_authed(&app, "/api/v1/orders", &customer.access).await, 200).await;
    assert_eq!(list["data"], json!([]), "{list}");
    assert_eq!(list["meta"]["total"], 0, "{list}");
    assert_eq!(order_rows(&app).await, 0);
    assert_eq!(order_item_row::Entity::find().count(&app.state.db).await.unwrap(), 0);

    // Both short, listed the other way round: both named.
    let res = place(&app, &customer.access, &json!({ "items": items(&[(scarce, 3), (plenty, 6)]) }), None).await;
    let err = assert_error(res, 409, "/api/v1/orders").await;
    let mut named = detail_fields(&err);
    named.sort();
    assert_eq!(named, vec!["items[0].quantity".to_string(), "items[1].quantity".to_string()], "{err}");

    // Exactly what is there can still be bought.
    order_ok(&app, &customer, &[(plenty, 5), (scarce, 2)]).await;
    assert_stock(&app, plenty, 0).await;
    assert_stock(&app, scarce, 0).await;
    let res = place(&app, &customer.access, &json!({ "items": items(&[(plenty, 1)]) }), None).await;
    assert_error(res, 409, "/api/v1/orders").await;
    assert_eq!(order_rows(&app).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

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

/// Fifty customers' orders race for seven units: exactly seven win, the rest get 409, and the
/// stock ends at zero, never below.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_never_oversell() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "3.00", 7).await;
    let mut customers = Vec::new();
    for i in 0..5 {
        customers.push(register(&app, &format!("racer{i}")).await);
    }
    let requests = (0..50)
        .map(|i| (customers[i % customers.len()].access.clone(), json!({ "items": items(&[(seeds, 1)]) }), None))
        .collect();
    let results = all_at_once(&app, requests).await;

    let created: Vec<&Value> = results.iter().filter(|r| r.0 == 201).map(|r| &r.1).collect();
    let refused = results.iter().filter(|r| r.0 == 409).count();
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert_eq!(created.len(), 7, "{statuses:?}");
    assert_eq!(refused, 43, "{statuses:?}");
    for (status, body, _) in results.iter().filter(|r| r.0 == 409) {
        assert_eq!(body["statusCode"], *status, "{body}");
        assert_eq!(detail_fields(body), vec!["items[0].quantity".to_string()], "{body}");
    }
    assert_stock(&app, seeds, 0).await;

    // What was sold is what the created orders hold, in the responses and in the database.
    let sold: i64 = created.iter().map(|o| o["items"][0]["quantity"].as_i64().unwrap()).sum();
    assert_eq!(sold, 7);
    let rows = order_item_row::Entity::find()
        .filter(order_item_row::Column::ProductId.eq(seeds))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| i64::from(r.quantity)).sum::<i64>(), 7);
    assert_eq!(order_rows(&app).await, 7);
}

/// Orders listing the same two products in opposite order, all at once: no deadlock (no 5xx),
/// no negative stock, and for each product what is left plus what was sold is what there was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_item_order_does_not_deadlock() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let (a_initial, b_initial) = (12_i64, 9_i64);
    let a = product(&app, &shop, "1.00", a_initial).await;
    let b = product(&app, &shop, "2.00", b_initial).await;
    let mut customers = Vec::new();
    for i in 0..4 {
        customers.push(register(&app, &format!("crossed{i}")).await);
    }
    // Demand (A: 60, B: 40) far exceeds stock, so some succeed and some are refused.
    let requests = (0..40)
        .map(|i| {
            let list = if i % 2 == 0 { items(&[(a, 1), (b, 1)]) } else { items(&[(b, 1), (a, 2)]) };
            (customers[i % customers.len()].access.clone(), json!({ "items": list }), None)
        })
        .collect();
    let results = all_at_once(&app, requests).await;

    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "only 201 or 409: {statuses:?}");
    assert!(statuses.contains(&201) && statuses.contains(&409), "{statuses:?}");
    let mut sold: HashMap<String, i64> = HashMap::new();
    for (_, order, _) in results.iter().filter(|r| r.0 == 201) {
        let list = order["items"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{order}");
        for item in list {
            *sold.entry(item["productId"].as_str().unwrap().to_string()).or_default() +=
                item["quantity"].as_i64().unwrap();
        }
    }
    for (id, initial) in [(a, a_initial), (b, b_initial)] {
        let left = db_stock(&app, id).await;
        assert!(left >= 0, "stock of {id} went negative: {left}");
        assert_eq!(api_stock(&app, id).await, left);
        let sold_here = sold.get(&id.to_string()).copied().unwrap_or(0);
        assert_eq!(left + sold_here, initial, "product {id}: left {left}, sold {sold_here}");
        let in_db: i64 = order_item_row::Entity::find()
            .filter(order_item_row::Column::ProductId.eq(id))
            .all(&app.state.db)
            .await
            .unwrap()
            .iter()
            .map(|r| i64::from(r.quantity))
            .sum();
        assert_eq!(in_db, sold_here, "order items in the database for {id}");
    }
    assert_eq!(order_rows(&app).await as usize, statuses.iter().filter(|s| **s == 201).count());
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------------

/// A retry with the same key and body gets the first response back byte for byte and takes no
/// more stock; another body under that key is 422; another user's identical key is their own.
#[tokio::test]
async fn idempotent_replay_mismatch_and_per_user_scope() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "5.25", 10).await;
    let ada = register(&app, "ada").await;
    let bob = register(&app, "bob").await;
    let body = json!({ "items": items(&[(seeds, 2)]) });

    let first = place(&app, &ada.access, &body, Some("order-key-1")).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none(), "the first execution is not a replay");
    let first_bytes = first.bytes().await.unwrap();
    let first_json: Value = serde_json::from_slice(&first_bytes).unwrap();

    for _ in 0..2 {
        let replay = place(&app, &ada.access, &body, Some("order-key-1")).await;
        assert_eq!(replay.status(), 201);
        assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
        assert!(replay.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert_eq!(replay.bytes().await.unwrap(), first_bytes, "byte-identical replay");
    }
    assert_stock(&app, seeds, 8).await;
    let list = json_of(get_authed(&app, "/api/v1/orders", &ada.access).await, 200).await;
    assert_eq!(list["meta"]["total"], 1, "{list}");
    assert_eq!(list["data"][0]["id"], first_json["id"], "{list}");

    // Same key, different request: 422, and nothing happens.
    let other_body = json!({ "items": items(&[(seeds, 3)]) });
    let res = place(&app, &ada.access, &other_body, Some("order-key-1")).await;
    assert_error(res, 422, "/api/v1/orders").await;
    assert_stock(&app, seeds, 8).await;
    assert_eq!(order_rows(&app).await, 1);

    // Bob's "order-key-1" is his own key: a new order, not Ada's replay.
    let res = place(&app, &bob.access, &body, Some("order-key-1")).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let bobs: Value = res.json().await.unwrap();
    assert_ne!(bobs["id"], first_json["id"]);
    assert_eq!(bobs["userId"], bob.id.to_string());
    assert_stock(&app, seeds, 6).await;
    assert_eq!(order_rows(&app).await, 2);

    // Without a key, the same body is simply a new order each time.
    order_ok(&app, &ada, &[(seeds, 2)]).await;
    assert_stock(&app, seeds, 4).await;
}

/// Twenty identical requests with one key, all at once: one order, one stock decrement, and
/// every caller gets that order (one execution, nineteen replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_execute_once() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "7.00", 100).await;
    let customer = register(&app, "eager").await;
    let body = json!({ "items": items(&[(seeds, 3)]) });
    let requests = (0..20).map(|_| (customer.access.clone(), body.clone(), Some("double-click".to_string()))).collect();
    let results = all_at_once(&app, requests).await;

    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let first_id = &results[0].1["id"];
    assert!(first_id.is_string(), "{}", results[0].1);
    assert!(results.iter().all(|r| r.1["id"] == *first_id), "one order id for all");
    assert_eq!(results.iter().filter(|r| !r.2).count(), 1, "exactly one execution, the rest replays");
    assert_eq!(order_rows(&app).await, 1);
    assert_stock(&app, seeds, 97).await;
}

/// A request refused for lack of stock does not use up its key: once restocked, the same key
/// and body go through as a first execution.
#[tokio::test]
async fn a_refused_request_does_not_store_its_key() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "1.50", 2).await;
    let customer = register(&app, "patient").await;
    let body = json!({ "items": items(&[(seeds, 3)]) });

    let res = place(&app, &customer.access, &body, Some("retry-me")).await;
    assert_error(res, 409, "/api/v1/orders").await;
    assert!(!key_exists(&app, customer.id, "retry-me").await, "a refused request stores no key");
    let again = place(&app, &customer.access, &body, Some("retry-me")).await;
    assert_error(again, 409, "/api/v1/orders").await;

    let res = authed(&app, Method::PATCH, &format!("/api/v1/products/{seeds}"), &shop.admin.access)
        .json(&json!({ "stockAdjustment": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 200).await["stock"], 3);

    let res = place(&app, &customer.access, &body, Some("retry-me")).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_stock(&app, seeds, 0).await;
    assert!(key_exists(&app, customer.id, "retry-me").await);
    // From now on the key replays that success.
    let res = place(&app, &customer.access, &body, Some("retry-me")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(order_rows(&app).await, 1);
}

#[tokio::test]
async fn idempotency_key_must_be_1_to_255_characters() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "1.00", 5).await;
    let customer = register(&app, "keys").await;
    let body = json!({ "items": items(&[(seeds, 1)]) });

    for bad in ["k".repeat(256), String::new()] {
        let res = place(&app, &customer.access, &body, Some(&bad)).await;
        let err = assert_error(res, 400, "/api/v1/orders").await;
        assert_eq!(detail_fields(&err), vec!["Idempotency-Key".to_string()], "{} chars: {err}", bad.len());
    }
    assert_eq!(order_rows(&app).await, 0);
    assert_stock(&app, seeds, 5).await;

    // 255 characters is fine.
    let longest = "k".repeat(255);
    json_of(place(&app, &customer.access, &body, Some(&longest)).await, 201).await;
    assert!(key_exists(&app, customer.id, &longest).await);
    assert_stock(&app, seeds, 4).await;
}

/// A key older than its 24 hours is a new key (even with another body), and `prune` removes
/// exactly the expired rows.
#[tokio::test]
async fn expired_keys_are_new_keys_and_are_pruned() {
    // No workers: the periodic prune (scheduled at start) must not remove the backdated key
    // before this test's own prune counts it.
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], axum::Router::new()).await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "2.00", 20).await;
    let customer = register(&app, "later").await;
    let body1 = json!({ "items": items(&[(seeds, 1)]) });
    let body2 = json!({ "items": items(&[(seeds, 2)]) });

    let first = json_of(place(&app, &customer.access, &body1, Some("yesterday")).await, 201).await;
    // Within the 24 hours, another body is refused.
    assert_error(place(&app, &customer.access, &body2, Some("yesterday")).await, 422, "/api/v1/orders").await;

    backdate_key(&app, customer.id, "yesterday", 25).await;
    let res = place(&app, &customer.access, &body2, Some("yesterday")).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let second: Value = res.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["items"][0]["quantity"], 2);
    assert_stock(&app, seeds, 17).await;
    // The key now belongs to the second request.
    let res = place(&app, &customer.access, &body2, Some("yesterday")).await;
    assert_eq!(res.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(res.json::<Value>().await.unwrap()["id"], second["id"]);

    // Pruning: one expired key, one fresh.
    json_of(place(&app, &customer.access, &body1, Some("stale")).await, 201).await;
    backdate_key(&app, customer.id, "stale", 25).await;
    let pruned = mash::idempotency::prune(&app.state.db, Duration::from_secs(86_400)).await.unwrap();
    assert_eq!(pruned, 1);
    assert!(!key_exists(&app, customer.id, "stale").await);
    assert!(key_exists(&app, customer.id, "yesterday").await, "a fresh key survives pruning");
    assert_eq!(mash::idempotency::prune(&app.state.db, Duration::from_secs(86_400)).await.unwrap(), 0);
    // Orders are not touched by pruning.
    assert_eq!(order_rows(&app).await, 3);
}

// ---------------------------------------------------------------------------------------------
// Cancel and the status machine
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cancel_returns_stock_once_and_only_for_the_owner_or_an_admin() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let a = product(&app, &shop, "3.00", 10).await;
    let b = product(&app, &shop, "4.00", 5).await;
    let owner = register(&app, "owner").await;
    let stranger = register(&app, "stranger").await;

    let order = order_ok(&app, &owner, &[(a, 2), (b, 1)]).await;
    let id = id_of(&order);
    let path = format!("/api/v1/orders/{id}/cancel");
    assert_stock(&app, a, 8).await;
    assert_stock(&app, b, 4).await;

    // Not visible to another customer, and nothing changes.
    assert_error(post_as(&app, &stranger, &path).await, 404, &path).await;
    assert_error(app.client.post(app.url(&path)).send().await.unwrap(), 401, &path).await;
    assert_stock(&app, a, 8).await;

    let cancelled = json_of(post_as(&app, &owner, &path).await, 200).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["id"], id);
    assert_stock(&app, a, 10).await;
    assert_stock(&app, b, 5).await;

    // A second cancel is a conflict and returns nothing twice.
    assert_error(post_as(&app, &owner, &path).await, 409, &path).await;
    assert_stock(&app, a, 10).await;
    assert_stock(&app, b, 5).await;

    // An admin may cancel any pending order.
    let order = order_ok(&app, &owner, &[(a, 4)]).await;
    assert_stock(&app, a, 6).await;
    let path = format!("/api/v1/orders/{}/cancel", id_of(&order));
    let cancelled = json_of(post_as(&app, &shop.admin, &path).await, 200).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_stock(&app, a, 10).await;

    // A paid order cannot be cancelled (it is refunded instead), by the owner or an admin.
    let order = order_ok(&app, &owner, &[(b, 3)]).await;
    let oid = id_of(&order);
    pay(&app, &owner, &oid).await;
    let path = format!("/api/v1/orders/{oid}/cancel");
    assert_error(post_as(&app, &owner, &path).await, 409, &path).await;
    assert_error(post_as(&app, &shop.admin, &path).await, 409, &path).await;
    assert_stock(&app, b, 2).await;
    let o = json_of(get_authed(&app, &format!("/api/v1/orders/{oid}"), &owner.access).await, 200).await;
    assert_eq!(o["status"], "paid");

    // An order that does not exist.
    let path = format!("/api/v1/orders/{}/cancel", Uuid::now_v7());
    assert_error(post_as(&app, &owner, &path).await, 404, &path).await;
}

/// pending -> paid -> fulfilled, paid -> refunded (with restock), and every move the machine
/// forbids is 409; fulfil and refund are for admins only.
#[tokio::test]
async fn status_machine_fulfil_and_refund() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let seeds = product(&app, &shop, "6.00", 10).await;
    let customer = register(&app, "machine").await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;

    // Fulfilment.
    let order = order_ok(&app, &customer, &[(seeds, 2)]).await;
    let id = id_of(&order);
    let fulfil = format!("/api/v1/orders/{id}/fulfill");
    let refund = format!("/api/v1/orders/{id}/refund");
    let cancel = format!("/api/v1/orders/{id}/cancel");
    assert_error(post_as(&app, &shop.admin, &fulfil).await, 409, &fulfil).await;
    pay(&app, &customer, &id).await;
    assert_error(post_as(&app, &customer, &fulfil).await, 403, &fulfil).await;
    assert_error(post_as(&app, &vendor, &fulfil).await, 403, &fulfil).await;
    assert_error(app.client.post(app.url(&fulfil)).send().await.unwrap(), 401, &fulfil).await;
    let done = json_of(post_as(&app, &shop.admin, &fulfil).await, 200).await;
    assert_eq!(done["status"], "fulfilled", "{done}");
    assert_eq!(done["items"][0]["quantity"], 2, "{done}");
    assert_error(post_as(&app, &shop.admin, &fulfil).await, 409, &fulfil).await;
    assert_error(post_as(&app, &customer, &cancel).await, 409, &cancel).await;
    assert_error(post_as(&app, &shop.admin, &refund).await, 409, &refund).await;
    let o = json_of(get_authed(&app, &format!("/api/v1/orders/{id}"), &customer.access).await, 200).await;
    assert_eq!(o["status"], "fulfilled");
    assert_stock(&app, seeds, 8).await;

    // Refund of a paid order returns its stock.
    let order = order_ok(&app, &customer, &[(seeds, 3)]).await;
    let id = id_of(&order);
    let refund = format!("/api/v1/orders/{id}/refund");
    assert_error(post_as(&app, &shop.admin, &refund).await, 409, &refund).await; // still pending
    pay(&app, &customer, &id).await;
    assert_stock(&app, seeds, 5).await;
    assert_error(post_as(&app, &customer, &refund).await, 403, &refund).await;
    let refunded = json_of(post_as(&app, &shop.admin, &refund).await, 200).await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert_stock(&app, seeds, 8).await;
    assert_error(post_as(&app, &shop.admin, &refund).await, 409, &refund).await;
    let fulfil = format!("/api/v1/orders/{id}/fulfill");
    assert_error(post_as(&app, &shop.admin, &fulfil).await, 409, &fulfil).await;
    assert_stock(&app, seeds, 8).await;
    let o = json_of(get_authed(&app, &format!("/api/v1/orders/{id}"), &customer.access).await, 200).await;
    assert_eq!(o["status"], "refunded");

    // Unknown orders.
    let fulfil = format!("/api/v1/orders/{}/fulfill", Uuid::now_v7());
    assert_error(post_as(&app, &shop.admin, &fulfil).await, 404, &fulfil).await;
}

// ---------------------------------------------------------------------------------------------
// Listing and visibility
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_shows_own_orders_and_admins_see_all() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let a = product(&app, &shop, "1.25", 50).await;
    let b = product(&app, &shop, "0.75", 50).await;
    let c1 = register(&app, "first").await;
    let c2 = register(&app, "second").await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;

    let c1_old = id_of(&order_ok(&app, &c1, &[(a, 1)]).await);
    let c2_only = id_of(&order_ok(&app, &c2, &[(b, 2)]).await);
    let c1_new = id_of(&order_ok(&app, &c1, &[(a, 3), (b, 4)]).await);
    let v_only = id_of(&order_ok(&app, &vendor, &[(b, 1)]).await);

    // Own orders only, newest first, each with its items.
    let list = json_of(get_authed(&app, "/api/v1/orders", &c1.access).await, 200).await;
    assert_eq!(ids(&list), vec![c1_new.clone(), c1_old.clone()], "{list}");
    assert_eq!(list["meta"]["total"], 2);
    let newest = &list["data"][0];
    let got: HashMap<String, i64> = newest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["productId"].as_str().unwrap().to_string(), i["quantity"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, HashMap::from([(a.to_string(), 3), (b.to_string(), 4)]), "{newest}");
    assert_eq!(newest["total"], money(3 * 125 + 4 * 75));
    assert_eq!(ids(&json_of(get_authed(&app, "/api/v1/orders", &c2.access).await, 200).await), vec![c2_only.clone()]);
    assert_eq!(
        ids(&json_of(get_authed(&app, "/api/v1/orders", &vendor.access).await, 200).await),
        vec![v_only.clone()]
    );

    // An admin sees everyone's, newest first.
    let all = json_of(get_authed(&app, "/api/v1/orders", &shop.admin.access).await, 200).await;
    assert_eq!(ids(&all), vec![v_only.clone(), c1_new.clone(), c2_only.clone(), c1_old.clone()], "{all}");
    assert_eq!(all["meta"]["total"], 4);

    // ?status= filters.
    json_of(post_as(&app, &c1, &format!("/api/v1/orders/{c1_old}/cancel")).await, 200).await;
    let cancelled = json_of(get_authed(&app, "/api/v1/orders?status=cancelled", &shop.admin.access).await, 200).await;
    assert_eq!(ids(&cancelled), vec![c1_old.clone()], "{cancelled}");
    let pending = json_of(get_authed(&app, "/api/v1/orders?status=pending", &c1.access).await, 200).await;
    assert_eq!(ids(&pending), vec![c1_new.clone()], "{pending}");
    let pending = json_of(get_authed(&app, "/api/v1/orders?status=pending", &shop.admin.access).await, 200).await;
    assert_eq!(ids(&pending), vec![v_only.clone(), c1_new.clone(), c2_only.clone()], "{pending}");
    let paid = json_of(get_authed(&app, "/api/v1/orders?status=paid", &c2.access).await, 200).await;
    assert_eq!(paid["data"], json!([]));

    // ?userId= is for admins.
    let path = format!("/api/v1/orders?userId={}", c2.id);
    assert_eq!(ids(&json_of(get_authed(&app, &path, &shop.admin.access).await, 200).await), vec![c2_only.clone()]);
    let path = format!("/api/v1/orders?userId={}&status=cancelled", c1.id);
    assert_eq!(ids(&json_of(get_authed(&app, &path, &shop.admin.access).await, 200).await), vec![c1_old.clone()]);
    let res = get_authed(&app, &format!("/api/v1/orders?userId={}", c2.id), &c1.access).await;
    assert_error(res, 403, "/api/v1/orders").await;
    let res = get_authed(&app, "/api/v1/orders?userId=not-a-uuid", &shop.admin.access).await;
    let err = assert_error(res, 400, "/api/v1/orders").await;
    assert_eq!(detail_fields(&err), vec!["userId".to_string()], "{err}");

    // A status outside the machine is a 400 naming it.
    let res = get_authed(&app, "/api/v1/orders?status=shipped", &c1.access).await;
    let err = assert_error(res, 400, "/api/v1/orders").await;
    assert_eq!(detail_fields(&err), vec!["status".to_string()], "{err}");

    // One order: the owner and admins; anyone else gets 404, like a missing order.
    let path = format!("/api/v1/orders/{c2_only}");
    assert_eq!(json_of(get_authed(&app, &path, &c2.access).await, 200).await["id"], c2_only);
    assert_eq!(json_of(get_authed(&app, &path, &shop.admin.access).await, 200).await["id"], c2_only);
    assert_error(get_authed(&app, &path, &c1.access).await, 404, &path).await;
    assert_error(get_authed(&app, &path, &vendor.access).await, 404, &path).await;
    let missing = format!("/api/v1/orders/{}", Uuid::now_v7());
    assert_error(get_authed(&app, &missing, &c1.access).await, 404, &missing).await;
    let err = assert_error(get_authed(&app, "/api/v1/orders/123", &c1.access).await, 400, "/api/v1/orders/123").await;
    assert_eq!(detail_fields(&err), vec!["id".to_string()], "{err}");

    // Anonymous callers get nothing.
    assert_error(app.get("/api/v1/orders").await, 401, "/api/v1/orders").await;
    assert_error(app.get(&path).await, 401, &path).await;
    let res = app.client.post(app.url("/api/v1/orders")).json(&json!({ "items": items(&[(a, 1)]) })).send().await;
    assert_error(res.unwrap(), 401, "/api/v1/orders").await;
    assert_eq!(order_rows(&app).await, 4);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Every malformed order is a 400 (415 for a non-JSON content type) naming the bad field, and
/// none of them creates an order or moves stock.
#[tokio::test]
async fn bad_orders_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let shop = open_shop(&app).await;
    let a = product(&app, &shop, "2.00", 10).await;
    let b = product(&app, &shop, "3.00", 10).await;
    let gone = product(&app, &shop, "4.00", 10).await;
    let res = authed(&app, Method::DELETE, &format!("/api/v1/products/{gone}"), &shop.admin.access).send().await;
    assert_eq!(res.unwrap().status(), 204);
    let customer = register(&app, "sloppy").await;
    let unknown = Uuid::now_v7();
    let too_many: Vec<(Uuid, i64)> = (0..101).map(|_| (Uuid::now_v7(), 1)).collect();

    let cases: Vec<(Value, &str)> = vec![
        (json!({ "items": [] }), "items"),
        (json!({ "items": items(&too_many) }), "items"),
        (json!({ "items": items(&[(a, 0)]) }), "items[0].quantity"),
        (json!({ "items": items(&[(a, -1)]) }), "items[0].quantity"),
        (json!({ "items": items(&[(a, 10_001)]) }), "items[0].quantity"),
        (json!({ "items": items(&[(a, 1), (b, 0)]) }), "items[1].quantity"),
        (json!({ "items": items(&[(a, 1), (b, 3_000_000_000)]) }), "items[1].quantity"),
        (json!({ "items": [{ "productId": a, "quantity": "2" }] }), "items[0].quantity"),
        (json!({ "items": [{ "productId": a, "quantity": 1.5 }] }), "items[0].quantity"),
        (json!({ "items": [{ "productId": "not-a-uuid", "quantity": 1 }] }), "items[0].productId"),
        (json!({ "items": items(&[(a, 1), (b, 1), (a, 2)]) }), "items[2].productId"),
        (json!({ "items": items(&[(a, 1), (unknown, 1), (b, 1)]) }), "items[1].productId"),
        (json!({ "items": items(&[(b, 2), (gone, 1)]) }), "items[1].productId"),
        (json!({ "items": items(&[(a, 1)]), "shippingAddress": "1 Main St" }), "shippingAddress"),
        (json!({ "items": items(&[(a, 1)]), "shippingAddress": ["1 Main St"] }), "shippingAddress"),
        (json!({ "items": items(&[(a, 1)]), "shippingAddress": 42 }), "shippingAddress"),
        (json!({ "items": items(&[(a, 1)]), "shippingAddress": { "note": "x".repeat(5000) } }), "shippingAddress"),
    ];
    for (body, want) in cases {
        let res = place(&app, &customer.access, &body, None).await;
        let err = assert_error(res, 400, "/api/v1/orders").await;
        assert_eq!(detail_fields(&err), vec![want.to_string()], "body {body}: {err}");
    }
    // Bodies that are not an order at all.
    for raw in ["{not json", "", "[]", "null", "{\"items\": {}}"] {
        let res = authed(&app, Method::POST, "/api/v1/orders", &customer.access)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "/api/v1/orders").await;
    }
    let valid = json!({ "items": items(&[(a, 1)]) }).to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut req = authed(&app, Method::POST, "/api/v1/orders", &customer.access).body(valid.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        assert_error(req.send().await.unwrap(), 415, "/api/v1/orders").await;
    }

    // Nothing was created and no stock moved, including the valid items next to a bad one.
    assert_eq!(order_rows(&app).await, 0);
    assert_stock(&app, a, 10).await;
    assert_stock(&app, b, 10).await;
    assert_eq!(db_stock(&app, gone).await, 10);
    let list = json_of(get_authed(&app, "/api/v1/orders", &customer.access).await, 200).await;
    assert_eq!(list["data"], json!([]));

    // Boundaries that are fine: quantity 10000 (when in stock) and an object address.
    let res = authed(&app, Method::PATCH, &format!("/api/v1/products/{a}"), &shop.admin.access)
        .json(&json!({ "stock": 10_000 }))
        .send()
        .await
        .unwrap();
    json_of(res, 200).await;
    let ok = json!({ "items": items(&[(a, 10_000)]), "shippingAddress": { "city": "Delft" } });
    let order = json_of(place(&app, &customer.access, &ok, None).await, 201).await;
    assert_eq!(order["total"], money(10_000 * 200));
    assert_stock(&app, a, 0).await;
}
