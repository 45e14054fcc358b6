//! Cache freshness: a write (also one made by an order, or on another instance over Redis)
//! shows at once in cached reads.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    accounts::{admin, json_of, register},
    shop::create_category,
    spawn_app, two_instances_on_redis,
};

use super::{call, id_of, ids, list, patch, product_path, read, simple_product};

// ---------------------------------------------------------------------------------------------
// Cache freshness
// ---------------------------------------------------------------------------------------------

/// Reads are cached, yet every read that starts after a write's answer sees that write: by id, in
/// a list page and in search results; also the stock an order takes and a cancel returns.
#[tokio::test]
async fn writes_show_at_once_in_cached_reads() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let customer = register(&app, "buyer").await;
    let cat = create_category(&app, &admin, "Bulbs").await;
    let id = simple_product(&app, &admin, cat, "Tulip Bulb", "2.00", 10).await;
    simple_product(&app, &admin, cat, "Crocus Bulb", "1.00", 5).await;
    let path = product_path(id);
    let page = [("orderBy", "price".to_string())];
    let search = |term: &str| vec![("search", term.to_string())];
    let in_list = |list: &Value| list["data"].as_array().unwrap().iter().find(|p| id_of(p) == id).cloned();

    // Warm: each read twice, so the second comes from the cache.
    for _ in 0..2 {
        assert_eq!(read(&app, &path).await["price"], "2.00");
        assert_eq!(in_list(&list(&app, &page).await).unwrap()["price"], "2.00");
        assert_eq!(ids(&list(&app, &search("tulip")).await), vec![id]);
    }

    assert_eq!(json_of(patch(&app, &path, &admin, json!({ "price": "0.50" })).await, 200).await["price"], "0.50");
    assert_eq!(read(&app, &path).await["price"], "0.50");
    let listed = list(&app, &page).await;
    assert_eq!(ids(&listed)[0], id, "the list is re-sorted by the new price");
    assert_eq!(listed["data"][0]["price"], "0.50");
    assert_eq!(list(&app, &search("tulip")).await["data"][0]["price"], "0.50");

    assert_eq!(json_of(patch(&app, &path, &admin, json!({ "stock": 0 })).await, 200).await["stock"], 0);
    let got = read(&app, &path).await;
    assert_eq!((&got["stock"], &got["inStock"]), (&json!(0), &json!(false)));
    assert!(in_list(&list(&app, &[("inStock", "true".into())]).await).is_none());
    assert!(in_list(&list(&app, &[("inStock", "false".into())]).await).is_some());

    let res = patch(&app, &path, &admin, json!({ "name": "Daffodil Bulb", "stock": 10 })).await;
    assert_eq!(json_of(res, 200).await["name"], "Daffodil Bulb");
    assert_eq!(read(&app, &path).await["name"], "Daffodil Bulb");
    assert!(ids(&list(&app, &search("tulip")).await).is_empty(), "the old name is no longer found");
    assert_eq!(ids(&list(&app, &search("daffodil")).await), vec![id]);
    assert_eq!(in_list(&list(&app, &page).await).unwrap()["name"], "Daffodil Bulb");

    // An order takes stock; the next read shows it, by id and in the list.
    let order = json!({ "items": [{ "productId": id, "quantity": 3 }] });
    let res = call(&app, Method::POST, "/api/v1/orders", Some(&customer.access), Some(order)).await;
    let order = json_of(res, 201).await;
    assert_eq!(order["items"][0]["unitPrice"], "0.50", "{order}");
    assert_eq!(read(&app, &path).await["stock"], 7);
    assert_eq!(in_list(&list(&app, &page).await).unwrap()["stock"], 7);

    // Cancelling returns it, visible at once too.
    let cancel = format!("/api/v1/orders/{}/cancel", id_of(&order));
    let res = call(&app, Method::POST, &cancel, Some(&customer.access), None).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    assert_eq!(read(&app, &path).await["stock"], 10);
    assert_eq!(in_list(&list(&app, &page).await).unwrap()["stock"], 10);
}

/// Two instances on one database and one Redis: instance B has the product cached, instance A
/// changes it, and B shows the change within a bounded number of polls (the cache lives far
/// longer than the test, so only the Redis message can make it fresh).
#[tokio::test]
async fn a_write_on_one_instance_reaches_the_other_over_redis() {
    let (a_app, b_app, _dir) = two_instances_on_redis(&[("CATALOGUE_CACHE_TTL_SECS", "3600")]).await;
    let admin = admin(&a_app).await;
    let cat = create_category(&a_app, &admin, "Shared").await;
    let id = simple_product(&a_app, &admin, cat, "Shared Spade", "3.00", 2).await;
    let path = product_path(id);

    for _ in 0..2 {
        assert_eq!(read(&b_app, &path).await["price"], "3.00");
        assert_eq!(list(&b_app, &[]).await["data"][0]["price"], "3.00");
    }
    assert_eq!(json_of(patch(&a_app, &path, &admin, json!({ "price": "4.25" })).await, 200).await["price"], "4.25");
    assert_eq!(read(&a_app, &path).await["price"], "4.25", "the writing instance at once");

    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = read(&b_app, &path).await["price"].clone();
        if seen == "4.25" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "4.25", "instance B must learn of the change through Redis");
    assert_eq!(list(&b_app, &[]).await["data"][0]["price"], "4.25", "B's list pages too");
}
