//! Cancel with restock (once, by the owner or an admin), the status machine through sandbox
//! payments, fulfilment and refunds, and listing per caller.

use std::collections::HashMap;

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    accounts::{get_authed, json_of, register, user_with_role},
    assert_error, detail_fields, ids,
    shop::{items, money, open_shop, order_ok, pay, product},
    spawn_app,
};

use super::{assert_stock, id_of, order_rows, post_as};

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
