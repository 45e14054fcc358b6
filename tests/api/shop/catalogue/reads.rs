//! Money on the wire (two-place decimal strings both ways), search (a literal, case-insensitive
//! substring of the name or the description) and the shape of product reads.

use axum::Router;
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{admin, json_of},
    assert_error,
    shop::{create_category, create_product, product_body},
    spawn_app, spawn_app_with,
};

use super::{
    CATEGORIES, Made, PRODUCTS, assert_bad_field, category_path, delete, get_query, id_of, ids, list, matches_search,
    patch, post, product_path, read, simple_product,
};

// ---------------------------------------------------------------------------------------------
// Money on the wire
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn prices_are_two_place_strings_and_anything_else_is_refused() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let cat = create_category(&app, &admin, "Seeds").await;

    for (sent, shown) in [("4.5", "4.50"), ("0.05", "0.05"), ("12", "12.00"), ("12.00", "12.00"), ("0", "0.00")] {
        let sku = format!("P-{}", Uuid::now_v7().simple());
        let out = create_product(&app, &admin, product_body(&sku, "Priced", sent, 1, cat)).await;
        assert_eq!(out["price"], shown, "sent {sent}: {out}");
        let id = id_of(&out);
        assert_eq!(read(&app, &product_path(id)).await["price"], shown);
        let newest = &list(&app, &[]).await["data"][0];
        assert_eq!(id_of(newest), id, "newest first");
        assert_eq!(newest["price"], shown, "{newest}");
    }

    let before = list(&app, &[]).await["meta"]["total"].clone();
    let bad_prices =
        [json!(4.5), json!(12), json!("1.234"), json!("-1"), json!("abc"), json!(""), json!("1e3"), json!(null)];
    for price in bad_prices {
        let body = json!({ "sku": "BAD-1", "name": "Bad", "price": price, "stock": 1, "categoryId": cat });
        let err = assert_bad_field(post(&app, PRODUCTS, &admin, body).await, PRODUCTS, "price").await;
        assert!(err["message"].as_str().unwrap().contains("price"), "{err}");
    }
    assert_eq!(list(&app, &[]).await["meta"]["total"], before, "nothing was created");

    // The same rules on PATCH, and a good PATCH shows two places.
    let id = simple_product(&app, &admin, cat, "Patched", "1.00", 1).await;
    let path = product_path(id);
    for price in [json!(7.1), json!("7.123"), json!("-7")] {
        assert_bad_field(patch(&app, &path, &admin, json!({ "price": price })).await, &path, "price").await;
    }
    assert_eq!(read(&app, &path).await["price"], "1.00", "a refused PATCH changes nothing");
    assert_eq!(json_of(patch(&app, &path, &admin, json!({ "price": "7.1" })).await, 200).await["price"], "7.10");
    assert_eq!(read(&app, &path).await["price"], "7.10");

    // Price filters follow the same format.
    for (param, value) in [("minPrice", "abc"), ("maxPrice", "1.234"), ("minPrice", "-1")] {
        assert_bad_field(get_query(&app, PRODUCTS, &[(param, value.into())]).await, PRODUCTS, param).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------------

/// The ids a search finds, by id.
async fn search_ids(app: &TestApp, term: String) -> Vec<Uuid> {
    ids(&list(app, &[("search", term), ("orderBy", "id".into())]).await)
}

/// `%` and `_` are plain characters, short terms work, case does not matter (for ASCII letters),
/// non-ASCII terms match, and deleted products are never found.
#[tokio::test]
async fn search_is_a_literal_case_insensitive_substring_of_name_or_description() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let cat = create_category(&app, &admin, "Mixed").await;

    let specs: [(&str, Option<&str>); 7] = [
        ("50% off_sale", None),
        ("50 percent offsale", Some("Half price, no symbols")),
        ("Garden Gloves", Some("Soft LEATHER gloves for pruning")),
        ("Plain Trowel", Some("Steel blade")),
        ("Crème Brûlée Mint", Some("Dessert herb")),
        ("Xy", None),
        ("Watering Can", Some("Holds 5 litres; galvanised")),
    ];
    let mut made = Vec::new();
    for (i, (name, description)) in specs.iter().enumerate() {
        let mut body = product_body(&format!("S-{i}"), name, "1.00", 1, cat);
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        let out = create_product(&app, &admin, body).await;
        made.push(Made {
            id: id_of(&out),
            name: name.to_string(),
            description: description.map(str::to_string),
            price: 100,
            stock: 1,
            category: cat,
            created_at: Utc::now(),
        });
    }
    // A deleted product that would match several of the terms below: found (and so cached)
    // while it exists, never after.
    let ghost = simple_product(&app, &admin, cat, "Ghost Gloves 50% off_sale brûlée", "1.00", 1).await;
    assert_eq!(search_ids(&app, "ghost".into()).await, vec![ghost]);
    assert_eq!(delete(&app, &product_path(ghost), &admin).await.status(), 204);

    let only = |name: &str| vec![made.iter().find(|m| m.name == name).unwrap().id];

    // Wildcards are literal: each of these matches the one product that has the characters.
    for term in ["%", "_", "0%", "f_", "50%", "% off_", "off_sale"] {
        assert_eq!(search_ids(&app, term.into()).await, only("50% off_sale"), "search {term:?}");
    }
    // Every term, against the independent substring computation (sorted by id, as asked).
    let terms = [
        "gloves", "GLOVES", "leather", "LeAtHeR", "x", "X", "xy", "e", "50", "off", "Steel", "blade", "rème", "Brûl",
        "brûlée", "û", "litres;", "ghost", "zzz",
    ];
    for term in terms {
        let mut want: Vec<Uuid> = made.iter().filter(|m| matches_search(m, term)).map(|m| m.id).collect();
        want.sort();
        assert_eq!(search_ids(&app, term.into()).await, want, "search {term:?}");
    }
    assert_eq!(search_ids(&app, "leather".into()).await, only("Garden Gloves"), "description matches");
    assert_eq!(search_ids(&app, "Brûl".into()).await, only("Crème Brûlée Mint"), "a non-ASCII term matches");
    assert!(search_ids(&app, "ghost".into()).await.is_empty(), "deleted products never appear");
    assert!(!search_ids(&app, "gloves".into()).await.contains(&ghost));
    assert_eq!(list(&app, &[("search", "gloves".into())]).await["meta"]["total"], 1);

    // Too long a term is refused, naming the parameter.
    assert_bad_field(get_query(&app, PRODUCTS, &[("search", "a".repeat(101))]).await, PRODUCTS, "search").await;
}

// ---------------------------------------------------------------------------------------------
// Shape of product reads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn product_reads_carry_category_currency_and_stock_flag() {
    let app = spawn_app_with(&[("SHOP_CURRENCY", "EUR")], Router::new()).await;
    let admin = admin(&app).await;
    let cat = create_category(&app, &admin, "Pots").await;
    let stocked = simple_product(&app, &admin, cat, "Clay Pot", "3.20", 4).await;
    let empty = simple_product(&app, &admin, cat, "Glazed Pot", "9.99", 0).await;

    let listed = list(&app, &[("orderBy", "id".into())]).await;
    assert_eq!(ids(&listed), vec![stocked, empty]);
    for (item, in_stock, stock) in [(&listed["data"][0], true, 4), (&listed["data"][1], false, 0)] {
        assert_eq!(item["category"], json!({ "id": cat, "name": "Pots" }), "{item}");
        assert_eq!(item["categoryId"], cat.to_string());
        assert_eq!(item["currency"], "EUR", "{item}");
        assert_eq!(item["inStock"], in_stock, "{item}");
        assert_eq!(item["stock"], stock, "{item}");
        assert!(item.get("vendorId").is_none_or(Value::is_null), "an admin's product has no vendor: {item}");
        // GET by id answers the same object as the list item.
        assert_eq!(&read(&app, &product_path(id_of(item))).await, item);
    }

    // Renaming the category shows in the products' `category` at once.
    let res = patch(&app, &category_path(cat), &admin, json!({ "name": "Planters" })).await;
    assert_eq!(json_of(res, 200).await["name"], "Planters");
    assert_eq!(read(&app, &product_path(stocked)).await["category"]["name"], "Planters");
    assert_eq!(list(&app, &[]).await["data"][0]["category"]["name"], "Planters");

    // Unknown and deleted: 404 in the error shape. Not a UUID: 400.
    let unknown = product_path(Uuid::now_v7());
    assert_error(app.get(&unknown).await, 404, &unknown).await;
    assert_eq!(delete(&app, &product_path(empty), &admin).await.status(), 204);
    assert_error(app.get(&product_path(empty)).await, 404, &product_path(empty)).await;
    assert_eq!(ids(&list(&app, &[]).await), vec![stocked], "a deleted product leaves the list");
    let bad = format!("{PRODUCTS}/not-a-uuid");
    assert_error(app.get(&bad).await, 400, &bad).await;
    let bad = format!("{CATEGORIES}/12345");
    assert_error(app.get(&bad).await, 400, &bad).await;
    let unknown = category_path(Uuid::now_v7());
    assert_error(app.get(&unknown).await, 404, &unknown).await;
}
