//! Who may write what (anonymous, customer, grower, two vendors, admin), bad input, relative
//! stock adjustments that never go below zero, and categories that still hold products.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{admin, json_of, register, user_with_role},
    assert_error,
    shop::{create_category, create_product, product_body},
    spawn_app,
};

use super::{
    CATEGORIES, PRODUCTS, assert_bad_field, call, category_path, delete, get_query, id_of, ids, list, patch, post,
    product_path, read, simple_product,
};

// ---------------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------------

/// Anonymous reads work; anonymous writes are 401; customers and growers 403; a vendor writes
/// its own products only; categories are changed and deleted by admins only.
#[tokio::test]
async fn catalogue_reads_are_public_and_writes_follow_role_and_ownership() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;
    let other_vendor = user_with_role(&app, "vendor2", "VENDOR").await;
    let customer = register(&app, "customer").await;
    let grower = user_with_role(&app, "grower", "GROWER").await;

    // A vendor creates a category and a product; the product is its own.
    let cat = create_category(&app, &vendor, "Vendor Category").await;
    let own = create_product(&app, &vendor, product_body("V-1", "Vendor Rake", "5.00", 3, cat)).await;
    assert_eq!(own["vendorId"], vendor.id.to_string(), "{own}");
    let own = id_of(&own);
    let admins = simple_product(&app, &admin, cat, "Admin Hoe", "6.00", 3).await;
    let others = simple_product(&app, &other_vendor, cat, "Other Shears", "7.00", 3).await;

    // Anonymous reads.
    for path in [CATEGORIES.to_string(), category_path(cat), PRODUCTS.to_string(), product_path(own)] {
        assert_eq!(app.get(&path).await.status(), 200, "GET {path} without a token");
    }

    // Every write, as each caller who may not make it.
    let writes = |sku: &str| {
        vec![
            (Method::POST, CATEGORIES.to_string(), Some(json!({ "name": format!("Nope {sku}") }))),
            (Method::POST, PRODUCTS.to_string(), Some(product_body(sku, "Nope", "1.00", 1, cat))),
            (Method::PATCH, product_path(own), Some(json!({ "price": "0.01" }))),
            (Method::DELETE, product_path(own), None),
            (Method::PATCH, category_path(cat), Some(json!({ "name": "Renamed" }))),
            (Method::DELETE, category_path(cat), None),
        ]
    };
    for (method, path, body) in writes("ANON-1") {
        assert_error(call(&app, method.clone(), &path, None, body).await, 401, &path).await;
    }
    for who in [&customer, &grower] {
        for (method, path, body) in writes("ROLE-1") {
            let res = call(&app, method.clone(), &path, Some(&who.access), body).await;
            assert_error(res, 403, &path).await;
        }
    }

    // A vendor may not touch another vendor's product nor an admin's.
    for (target, price) in [(others, "7.00"), (admins, "6.00")] {
        let path = product_path(target);
        assert_error(patch(&app, &path, &vendor, json!({ "price": "0.01" })).await, 403, &path).await;
        assert_error(delete(&app, &path, &vendor).await, 403, &path).await;
        assert_eq!(read(&app, &path).await["price"], price, "unchanged");
    }
    // Nor change or delete categories, even one it created.
    let path = category_path(cat);
    assert_error(patch(&app, &path, &vendor, json!({ "name": "Mine" })).await, 403, &path).await;
    assert_error(delete(&app, &path, &vendor).await, 403, &path).await;

    // After all the refusals, nothing changed.
    let everything = list(&app, &[("orderBy", "id".into())]).await;
    assert_eq!(ids(&everything), vec![own, admins, others]);
    assert_eq!(everything["data"][0]["price"], "5.00");
    let cats = read(&app, CATEGORIES).await;
    assert_eq!(cats["meta"]["total"], 1, "{cats}");
    assert_eq!(cats["data"][0]["name"], "Vendor Category");

    // What is allowed.
    let res = patch(&app, &product_path(own), &vendor, json!({ "price": "5.50" })).await;
    assert_eq!(json_of(res, 200).await["price"], "5.50");
    let res = patch(&app, &product_path(others), &admin, json!({ "stock": 9 })).await;
    assert_eq!(json_of(res, 200).await["stock"], 9, "an admin changes any product");
    let res = patch(&app, &category_path(cat), &admin, json!({ "name": "Renamed" })).await;
    assert_eq!(json_of(res, 200).await["name"], "Renamed");
    assert_eq!(delete(&app, &product_path(own), &vendor).await.status(), 204, "a vendor deletes its own");
    assert_eq!(delete(&app, &product_path(others), &admin).await.status(), 204, "an admin deletes any");
    assert_eq!(ids(&list(&app, &[]).await), vec![admins]);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_catalogue_input_is_a_clear_4xx() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let cat = create_category(&app, &admin, "Soil").await;
    let good = || product_body("SOIL-1", "Potting Mix", "8.00", 5, cat);

    let with = |key: &str, value: Value| {
        let mut b = good();
        b[key] = value;
        b
    };
    let without = |key: &str| {
        let mut b = good();
        b.as_object_mut().unwrap().remove(key);
        b
    };

    // Each names the field at fault.
    let cases = [
        (with("name", json!("   ")), "name"),
        (with("name", json!("")), "name"),
        (with("sku", json!("has space")), "sku"),
        (with("sku", json!("")), "sku"),
        (with("stock", json!(-1)), "stock"),
        (with("stock", json!(1.5)), "stock"),
        (with("categoryId", json!(Uuid::now_v7())), "categoryId"),
        (with("categoryId", json!("not-a-uuid")), "categoryId"),
    ];
    for (body, field) in cases {
        assert_bad_field(post(&app, PRODUCTS, &admin, body.clone()).await, PRODUCTS, field).await;
    }
    // Missing fields and unknown fields are 400 that say which.
    for (body, word) in
        [(without("name"), "name"), (without("price"), "price"), (with("colour", json!("red")), "colour")]
    {
        let err = assert_error(post(&app, PRODUCTS, &admin, body).await, 400, PRODUCTS).await;
        assert!(err.to_string().contains(word), "the error mentions {word}: {err}");
    }
    assert_eq!(list(&app, &[]).await["meta"]["total"], 0, "nothing was created");

    // Duplicate SKU is 409, also by PATCH; the SKU is free again once its product is deleted.
    let first = id_of(&create_product(&app, &admin, good()).await);
    let err = assert_error(post(&app, PRODUCTS, &admin, with("name", json!("Another Mix"))).await, 409, PRODUCTS).await;
    assert!(err["message"].as_str().unwrap().to_lowercase().contains("sku"), "{err}");
    let second = simple_product(&app, &admin, cat, "Bark Mulch", "4.00", 1).await;
    let path = product_path(second);
    assert_error(patch(&app, &path, &admin, json!({ "sku": "SOIL-1" })).await, 409, &path).await;
    assert_eq!(delete(&app, &product_path(first), &admin).await.status(), 204);
    let again = create_product(&app, &admin, good()).await;
    assert_eq!(again["sku"], "SOIL-1");

    // PATCH: unknown fields, unknown category, blank name, negative stock.
    for (body, field) in [
        (json!({ "name": " " }), "name"),
        (json!({ "stock": -3 }), "stock"),
        (json!({ "categoryId": Uuid::now_v7() }), "categoryId"),
        (json!({ "sku": "a b" }), "sku"),
    ] {
        assert_bad_field(patch(&app, &path, &admin, body).await, &path, field).await;
    }
    assert_error(patch(&app, &path, &admin, json!({ "bogus": 1 })).await, 400, &path).await;
    let unchanged = read(&app, &path).await;
    assert_eq!((&unchanged["name"], &unchanged["stock"]), (&json!("Bark Mulch"), &json!(1)));

    // Categories: blank or missing name, unknown field, duplicate name.
    assert_bad_field(post(&app, CATEGORIES, &admin, json!({ "name": "  " })).await, CATEGORIES, "name").await;
    assert_error(post(&app, CATEGORIES, &admin, json!({})).await, 400, CATEGORIES).await;
    assert_error(post(&app, CATEGORIES, &admin, json!({ "name": "X", "parent": 1 })).await, 400, CATEGORIES).await;
    let err = assert_error(post(&app, CATEGORIES, &admin, json!({ "name": "Soil" })).await, 409, CATEGORIES).await;
    assert!(err["message"].as_str().unwrap().contains("name"), "{err}");
    let other = create_category(&app, &admin, "Compost").await;
    let cpath = category_path(other);
    assert_error(patch(&app, &cpath, &admin, json!({ "name": "Soil" })).await, 409, &cpath).await;
    assert_eq!(read(&app, CATEGORIES).await["meta"]["total"], 2);

    // List parameters, each named.
    for (param, value) in [
        ("inStock", "yes"),
        ("orderBy", "stock"),
        ("order", "up"),
        ("categoryId", "nope"),
        ("page", "0"),
        ("limit", "0"),
        ("page", "x"),
    ] {
        assert_bad_field(get_query(&app, PRODUCTS, &[(param, value.into())]).await, PRODUCTS, param).await;
    }
    let crossed = [("minPrice", "5.00".to_string()), ("maxPrice", "4.00".to_string())];
    assert_error(get_query(&app, PRODUCTS, &crossed).await, 400, PRODUCTS).await;
}

#[tokio::test]
async fn stock_adjustments_are_relative_and_never_go_below_zero() {
    let app = spawn_app().await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;
    let cat = create_category(&app, &vendor, "Twine").await;
    let id = simple_product(&app, &vendor, cat, "Jute Twine", "2.40", 5).await;
    let path = product_path(id);

    let err = assert_error(patch(&app, &path, &vendor, json!({ "stockAdjustment": -6 })).await, 409, &path).await;
    assert!(err["message"].as_str().unwrap().contains("stock"), "{err}");
    assert_eq!(read(&app, &path).await["stock"], 5, "a refused adjustment leaves the stock");

    let both = json!({ "stock": 3, "stockAdjustment": 1 });
    assert_bad_field(patch(&app, &path, &vendor, both).await, &path, "stockAdjustment").await;
    assert_eq!(read(&app, &path).await["stock"], 5);

    let res = patch(&app, &path, &vendor, json!({ "stockAdjustment": 7 })).await;
    assert_eq!(json_of(res, 200).await["stock"], 12, "a positive adjustment adds");
    let res = patch(&app, &path, &vendor, json!({ "stockAdjustment": -12 })).await;
    let out = json_of(res, 200).await;
    assert_eq!((&out["stock"], &out["inStock"]), (&json!(0), &json!(false)), "down to exactly zero");
    assert_error(patch(&app, &path, &vendor, json!({ "stockAdjustment": -1 })).await, 409, &path).await;
    assert_eq!(read(&app, &path).await["stock"], 0);
    let res = patch(&app, &path, &vendor, json!({ "stock": 4 })).await;
    assert_eq!(json_of(res, 200).await["stock"], 4, "stock alone sets it");
    assert_eq!(read(&app, &path).await["stock"], 4);
}

// ---------------------------------------------------------------------------------------------
// Categories
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_category_that_still_has_products_cannot_be_deleted() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;
    let cat = create_category(&app, &admin, "Seasonal").await;
    let kept = create_category(&app, &admin, "Evergreen").await;
    let a = simple_product(&app, &admin, cat, "Pumpkin Seeds", "1.50", 3).await;
    let b = simple_product(&app, &vendor, cat, "Gourd Seeds", "1.70", 0).await;
    let path = category_path(cat);

    let err = assert_error(delete(&app, &path, &admin).await, 409, &path).await;
    assert!(err["message"].as_str().unwrap().contains("product"), "{err}");
    assert_eq!(read(&app, &path).await["name"], "Seasonal", "still there");

    assert_eq!(delete(&app, &product_path(a), &admin).await.status(), 204);
    assert_error(delete(&app, &path, &admin).await, 409, &path).await;
    assert_eq!(delete(&app, &product_path(b), &vendor).await.status(), 204);
    assert_eq!(delete(&app, &path, &admin).await.status(), 204, "empty now");

    let cats = read(&app, CATEGORIES).await;
    assert_eq!(ids(&cats), vec![kept], "{cats}");
    assert_eq!(cats["meta"]["total"], 1);
    assert_error(app.get(&path).await, 404, &path).await;
    assert_error(delete(&app, &path, &admin).await, 404, &path).await;
    let body = product_body("LATE-1", "Late Seeds", "1.00", 1, cat);
    assert_bad_field(post(&app, PRODUCTS, &admin, body).await, PRODUCTS, "categoryId").await;
    // Its name is free again.
    create_category(&app, &admin, "Seasonal").await;
}

#[tokio::test]
async fn categories_list_pages_with_meta() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let names = ["Roses", "Bulbs", "Ferns", "Cacti", "Orchids", "Herbs", "Alliums"];
    let mut made = Vec::new();
    for name in names {
        made.push((name, create_category(&app, &admin, name).await));
    }
    made.sort();
    let limit = 3u64;
    let total = made.len() as u64;
    for page in 1..=4u64 {
        let got = json_of(
            get_query(&app, CATEGORIES, &[("page", page.to_string()), ("limit", limit.to_string())]).await,
            200,
        )
        .await;
        let want: Vec<Uuid> =
            made.iter().skip(((page - 1) * limit) as usize).take(limit as usize).map(|(_, id)| *id).collect();
        assert_eq!(ids(&got), want, "page {page}");
        let pages = total.div_ceil(limit);
        assert_eq!(
            got["meta"],
            json!({ "page": page, "limit": limit, "total": total, "totalPages": pages, "hasMore": page < pages }),
            "page {page}"
        );
    }
    let all = read(&app, CATEGORIES).await;
    let listed: Vec<&str> = all["data"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut sorted = names.to_vec();
    sorted.sort();
    assert_eq!(listed, sorted, "by name");
    assert_eq!(all["meta"]["limit"], 20);
    assert_bad_field(get_query(&app, CATEGORIES, &[("limit", "abc".into())]).await, CATEGORIES, "limit").await;
}
