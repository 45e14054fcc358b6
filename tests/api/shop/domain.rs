//! The shop's rules called as plain functions, without HTTP, on the state of a real app: the
//! idempotency wrapper (`once`, `once_after`), placing and cancelling orders, the status
//! machine, stock adjustments, and the database CHECKs behind the status enums.
//!
//! People are registered through the API (the tables need real users); who they act as is an
//! `AuthUser` built here, since the domain trusts the caller it is given.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use axum::http::StatusCode;
use mash::{
    auth::{AuthUser, ClientMeta, Role},
    idempotency::{self, IdempotencyError, IdempotencyKey, Once},
    ids::ProductId,
    shop::{
        catalogue::{self, CatalogueError, ProductOut},
        entity::{order as order_row, product as product_row},
        orders::{self, Basket, OrderError, OrderStatus, Placed},
    },
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, accounts::register, spawn_app};

const TTL: Duration = Duration::from_secs(3600);

/// A registered person acting with `role`.
async fn person(app: &TestApp, role: Role) -> AuthUser {
    let account = register(app, "domain").await;
    AuthUser { user_id: account.id, session_id: Uuid::nil(), role }
}

fn client() -> ClientMeta {
    ClientMeta { ip: None, user_agent: Some("shop_domain test".into()) }
}

/// A product with `stock` units at 2.50, in a new category, created by `admin`.
async fn product(app: &TestApp, admin: &AuthUser, stock: i64) -> ProductOut {
    let name = format!("Seeds {}", Uuid::now_v7().simple());
    let category =
        catalogue::create_category(&app.state, admin.user_id.into(), &client(), from(json!({ "name": name })))
            .await
            .unwrap();
    let input = from(json!({
        "sku": format!("SKU-{}", Uuid::now_v7().simple()), "name": "Basil", "price": "2.50",
        "stock": stock, "categoryId": category.id,
    }));
    catalogue::create_product(&app.state, admin, &client(), input).await.unwrap()
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn stock_of(app: &TestApp, id: Uuid) -> i64 {
    product_row::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap().stock
}

/// Places `quantity` of `product` for `customer` in its own transaction, without a key.
async fn place(app: &TestApp, customer: &AuthUser, product: Uuid, quantity: i32) -> Result<Placed, OrderError> {
    let basket = Basket::new(&from(json!({ "items": [{ "productId": product, "quantity": quantity }] })))?;
    let shop = &app.state.config.shop;
    let done = idempotency::once(&app.state.db, None, TTL, StatusCode::CREATED, async |txn| {
        orders::place(txn, shop, customer.user_id.into(), &basket).await
    })
    .await?;
    match done {
        Once::Done { value, .. } => Ok(value),
        Once::Replayed(_) => panic!("no key, no replay"),
    }
}

#[tokio::test]
async fn once_runs_the_work_once_per_key_and_forgets_refusals() {
    let app = spawn_app().await;
    let me = person(&app, Role::Customer).await;
    let key = |k: &str, body: Value| IdempotencyKey(Some(k.into())).bind(me.user_id, "POST /test", &body);
    let runs = AtomicUsize::new(0);
    let work = async |_: &mash::db::WriteTxn| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, OrderError>(json!({ "ran": true }))
    };
    let first = key("k1", json!({ "a": 1 }));

    let done = idempotency::once(&app.state.db, first.as_ref(), TTL, StatusCode::CREATED, &work).await.unwrap();
    assert!(matches!(&done, Once::Done { response, value } if response.status() == 201 && value["ran"] == true));
    let again = idempotency::once(&app.state.db, first.as_ref(), TTL, StatusCode::CREATED, &work).await.unwrap();
    let Once::Replayed(replay) = again else { panic!("the second run must replay") };
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()[idempotency::REPLAYED_HEADER], "true");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");

    // The same key with another request.
    let other = key("k1", json!({ "a": 2 }));
    let reused = idempotency::once(&app.state.db, other.as_ref(), TTL, StatusCode::CREATED, &work).await;
    assert!(matches!(reused, Err(OrderError::Idempotency(IdempotencyError::Reused))), "{reused:?}");

    // A refusal rolls the key back with everything else: the retry is the first run.
    let second = key("k2", json!({}));
    let refused = idempotency::once(&app.state.db, second.as_ref(), TTL, StatusCode::OK, async |_| {
        Err::<Value, _>(OrderError::TotalTooLarge)
    })
    .await;
    assert!(matches!(refused, Err(OrderError::TotalTooLarge)));
    let retried = idempotency::once(&app.state.db, second.as_ref(), TTL, StatusCode::OK, &work).await.unwrap();
    assert!(matches!(retried, Once::Done { .. }));
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // once_after replays a completed key before its slow outside step runs.
    let replayed = idempotency::once_after(
        &app.state.db,
        first.as_ref(),
        TTL,
        StatusCode::CREATED,
        async || -> Result<(), OrderError> { panic!("a replay must not reach the provider") },
        async |_, ()| Ok(json!({})),
    )
    .await
    .unwrap();
    assert!(matches!(replayed, Once::Replayed(r) if r.status() == 201));
}

#[tokio::test]
async fn placing_takes_the_stock_or_refuses_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = person(&app, Role::Admin).await;
    let customer = person(&app, Role::Customer).await;
    let p = product(&app, &admin, 3).await;

    let twice = json!({ "items": [{ "productId": p.id, "quantity": 1 }, { "productId": p.id, "quantity": 2 }] });
    match Basket::new(&from(twice)) {
        Err(OrderError::RepeatedProducts(details)) => assert_eq!(details[0].field, "items[1].productId"),
        other => panic!("expected a repeated product, got {other:?}"),
    }

    match place(&app, &customer, p.id, 5).await {
        Err(OrderError::NotEnoughStock(details)) => {
            assert_eq!(
                (details[0].field.as_str(), details[0].message.as_str()),
                ("items[0].quantity", "only 3 in stock, 5 requested")
            );
        }
        other => panic!("expected not enough stock, got {other:?}"),
    }
    assert_eq!(stock_of(&app, p.id).await, 3, "a refused order takes nothing");
    let unknown = place(&app, &customer, Uuid::now_v7(), 1).await;
    assert!(matches!(unknown, Err(OrderError::UnknownProducts(_))), "{unknown:?}");

    let Placed(order) = place(&app, &customer, p.id, 2).await.unwrap();
    assert_eq!((order.status, order.total.minor(), order.user_id), (OrderStatus::Pending, 500, customer.user_id));
    assert_eq!(stock_of(&app, p.id).await, 1);

    // The machine: a pending order cannot be fulfilled, and only its owner (or ADMIN) sees it.
    // (Everyone is registered first: on SQLite the transaction holds the one write lock.)
    let stranger = person(&app, Role::Customer).await;
    let txn = app.state.db.begin_write().await.unwrap();
    let refused = orders::transition(&txn, order.id.into(), OrderStatus::Fulfilled).await.unwrap_err();
    assert_eq!(refused.to_string(), "order is pending; it cannot become fulfilled");
    let hidden = orders::cancel(&txn, &stranger, order.id.into(), &client()).await;
    assert!(matches!(hidden, Err(OrderError::NotFound)), "{hidden:?}");
    let cancelled = orders::cancel(&txn, &customer, order.id.into(), &client()).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(cancelled.order.status, OrderStatus::Cancelled);
    assert_eq!(stock_of(&app, p.id).await, 3, "the stock came back");
}

#[tokio::test]
async fn stock_is_set_or_adjusted_never_below_zero_and_only_by_its_owner() {
    let app = spawn_app().await;
    let vendor = person(&app, Role::Vendor).await;
    let p = product(&app, &vendor, 3).await;
    let id = ProductId::from(p.id);
    let client = client();
    let update =
        async |by: &AuthUser, patch: Value| catalogue::update_product(&app.state, by, &client, id, from(patch)).await;

    let both = update(&vendor, json!({"stock": 1, "stockAdjustment": 1})).await;
    assert!(matches!(both, Err(CatalogueError::StockSetAndAdjusted)), "{both:?}");
    let below = update(&vendor, json!({"stockAdjustment": -4})).await;
    assert!(matches!(below, Err(CatalogueError::StockOutOfRange)), "{below:?}");
    assert_eq!(stock_of(&app, p.id).await, 3, "a refused adjustment changes nothing");
    let other = person(&app, Role::Vendor).await;
    let theirs = update(&other, json!({"stockAdjustment": 1})).await;
    assert!(matches!(theirs, Err(CatalogueError::NotYourProduct)), "{theirs:?}");

    let out = update(&vendor, json!({"stockAdjustment": -3})).await.unwrap();
    assert_eq!((out.stock, out.in_stock), (0, false));
}

#[tokio::test]
async fn the_database_refuses_a_status_outside_the_enums() {
    let app = spawn_app().await;
    let admin = person(&app, Role::Admin).await;
    let p = product(&app, &admin, 1).await;
    let Placed(order) = place(&app, &admin, p.id, 1).await.unwrap();
    let db = &app.state.db;

    // The raw strings, past the enum.
    let set_status = |status: &'static str| {
        order_row::Entity::update_many()
            .col_expr(order_row::Column::Status, Expr::value(status))
            .filter(order_row::Column::Id.eq(order.id))
            .exec(db)
    };
    assert!(set_status("shipped").await.is_err(), "orders.status is checked");
    assert_eq!(set_status("cancelled").await.expect("an enum value is stored").rows_affected, 1);
    let bad_provider = "INSERT INTO webhook_events (provider, event_id, event_type, received_at) \
                        VALUES ('paypal', 'evt_1', 'x', CURRENT_TIMESTAMP)";
    assert!(db.execute_unprepared(bad_provider).await.is_err(), "webhook_events.provider is checked");
}
