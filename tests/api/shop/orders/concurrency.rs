//! Concurrent orders never oversell, and two orders listing the same products in opposite order
//! do not deadlock.

use std::collections::HashMap;

use mash::shop::entity::order_item as order_item_row;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{
    accounts::register,
    detail_fields,
    shop::{items, open_shop, product},
    spawn_app,
};

use super::{all_at_once, api_stock, assert_stock, db_stock, order_rows};

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

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
