//! `Idempotency-Key`: replay, 422 on another body, per-user scope, one execution under
//! concurrency, refused requests not remembered, length limits, expiry and pruning.

use std::time::Duration;

use chrono::Utc;
use mash::idempotency::entity as idempotency_key;
use reqwest::Method;
use sea_orm::{ConnectionTrait, DatabaseBackend, EntityTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{authed, get_authed, json_of, register},
    assert_error, detail_fields,
    shop::{items, open_shop, order_ok, place, product},
    spawn_app, spawn_app_with,
};

use super::{all_at_once, assert_stock, order_rows};

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
