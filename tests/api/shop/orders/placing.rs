//! Placing an order: totals from the catalogue (never from the client), short stock a 409 that
//! changes nothing, and bad orders refused without a change.

use mash::shop::entity::{order as order_row, order_item as order_item_row};
use reqwest::Method;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{authed, get_authed, json_of, register},
    assert_error, detail_fields,
    shop::{items, money, open_shop, order_ok, place, product},
    spawn_app,
};

use super::{assert_stock, db_stock, id_of, order_rows};

/// Parses a money string from a response into cents, insisting on exactly two decimals.
fn cents_of(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("money must be a string, got {v}"));
    let (whole, frac) = s.split_once('.').unwrap_or_else(|| panic!("two places expected: {s:?}"));
    assert!(!whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
    assert!(frac.len() == 2 && frac.bytes().all(|b| b.is_ascii_digit()), "two places expected: {s:?}");
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
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
