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

use std::time::Duration;

use axum::Router;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, admin, json_of, register, user_with_role},
    assert_error, detail_fields,
    shop::{create_category, create_product, money, product_body},
    spawn_app, spawn_app_with, two_instances_on_redis,
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

// ---------------------------------------------------------------------------------------------
// Filters, sorting and pagination against an independent computation
// ---------------------------------------------------------------------------------------------

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

/// One `GET /products` query; `category` indexes the test's categories.
#[derive(Debug, Default, Clone)]
struct Case {
    search: Option<&'static str>,
    category: Option<usize>,
    min: Option<i64>,
    max: Option<i64>,
    in_stock: Option<bool>,
    order_by: Option<&'static str>,
    order: Option<&'static str>,
    page: Option<u64>,
    limit: Option<u64>,
}

impl Case {
    fn params(&self, categories: &[Uuid]) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(s) = self.search {
            p.push(("search", s.to_string()));
        }
        if let Some(c) = self.category {
            p.push(("categoryId", categories[c].to_string()));
        }
        if let Some(lo) = self.min {
            p.push(("minPrice", money(lo)));
        }
        if let Some(hi) = self.max {
            p.push(("maxPrice", money(hi)));
        }
        if let Some(s) = self.in_stock {
            p.push(("inStock", s.to_string()));
        }
        if let Some(o) = self.order_by {
            p.push(("orderBy", o.to_string()));
        }
        if let Some(o) = self.order {
            p.push(("order", o.to_string()));
        }
        if let Some(n) = self.page {
            p.push(("page", n.to_string()));
        }
        if let Some(n) = self.limit {
            p.push(("limit", n.to_string()));
        }
        p
    }

    /// The ids of the page, in order, and the `meta` the contract promises for it.
    fn expected(&self, made: &[Made], categories: &[Uuid]) -> (Vec<Uuid>, Value) {
        let mut rows: Vec<&Made> = made
            .iter()
            .filter(|m| self.search.is_none_or(|s| matches_search(m, s)))
            .filter(|m| self.category.is_none_or(|c| m.category == categories[c]))
            .filter(|m| self.min.is_none_or(|lo| m.price >= lo))
            .filter(|m| self.max.is_none_or(|hi| m.price <= hi))
            .filter(|m| self.in_stock.is_none_or(|want| (m.stock > 0) == want))
            .collect();
        // Newest first without `orderBy` and `order`; ascending once `orderBy` is given.
        let desc = match self.order {
            Some("desc") => true,
            Some("asc") => false,
            None => self.order_by.is_none(),
            Some(other) => panic!("bad case order {other}"),
        };
        let by = self.order_by.unwrap_or("createdAt");
        rows.sort_by(|a, b| {
            let primary = match by {
                "id" => std::cmp::Ordering::Equal,
                "name" => a.name.cmp(&b.name),
                "price" => a.price.cmp(&b.price),
                "createdAt" => a.created_at.cmp(&b.created_at),
                other => panic!("bad case orderBy {other}"),
            };
            primary.then(a.id.cmp(&b.id))
        });
        if desc {
            rows.reverse();
        }
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(20).min(100);
        let total = rows.len() as u64;
        let total_pages = total.div_ceil(limit);
        let ids = rows.iter().skip(((page - 1) * limit) as usize).take(limit as usize).map(|m| m.id).collect();
        let meta = json!({
            "page": page, "limit": limit, "total": total, "totalPages": total_pages, "hasMore": page < total_pages,
        });
        (ids, meta)
    }
}

fn matches_search(m: &Made, term: &str) -> bool {
    let term = term.to_lowercase();
    m.name.to_lowercase().contains(&term) || m.description.as_ref().is_some_and(|d| d.to_lowercase().contains(&term))
}

/// Names that sort the same byte-wise and under any collation: capitalised words, none the
/// prefix of another, followed by a two-digit number.
const WORDS: [&str; 20] = [
    "Alder", "Basil", "Chive", "Dill", "Endive", "Fennel", "Garlic", "Hyssop", "Iris", "Juniper", "Kale", "Lovage",
    "Mint", "Nettle", "Oregano", "Parsley", "Quince", "Rosemary", "Sage", "Thyme",
];

/// Forty products over three categories, made by an admin and a vendor through the API, with
/// shared prices, shared names, out-of-stock items and descriptions on some.
async fn seed_catalogue(app: &TestApp, admin: &Account, vendor: &Account) -> (Vec<Uuid>, Vec<Made>) {
    let categories = vec![
        create_category(app, admin, "Herbs").await,
        create_category(app, vendor, "Fruit").await,
        create_category(app, admin, "Tools").await,
    ];
    let mut made = Vec::new();
    for i in 0..40usize {
        let name = if i >= 36 { "Mint 01".to_string() } else { format!("{} {:02}", WORDS[(i * 7) % 20], i % 3) };
        let description = match i % 5 {
            0 => Some(format!("Fresh berry flavour, batch {i}")),
            1 => Some("Hardy perennial".to_string()),
            _ => None,
        };
        // Twelve distinct prices over forty products: many ties. i = 0 costs 0.05.
        let price = ((i as i64 * 13) % 12) * 125 + 5;
        let stock = if i % 4 == 0 { 0 } else { (i as i64 * 3) % 17 + 1 };
        let category = categories[i % 3];
        let mut body = product_body(&format!("CAT-{i:03}"), &name, &money(price), stock, category);
        if let Some(d) = &description {
            body["description"] = json!(d);
        }
        let by = if i % 2 == 0 { admin } else { vendor };
        let out = create_product(app, by, body).await;
        assert_eq!(out["price"], money(price), "{out}");
        made.push(Made {
            id: id_of(&out),
            name,
            description,
            price,
            stock,
            category,
            created_at: DateTime::parse_from_rfc3339(out["createdAt"].as_str().unwrap()).unwrap().to_utc(),
        });
    }
    // The stored creation times are what the server sorts by (PostgreSQL keeps microseconds):
    // take them from a full listing, and check that listing against what was created.
    let all = list(app, &[("limit", "100".into()), ("orderBy", "id".into())]).await;
    assert_eq!(all["meta"]["total"], 40, "{}", all["meta"]);
    for item in all["data"].as_array().unwrap() {
        let m = made.iter_mut().find(|m| m.id == id_of(item)).expect("a product the test made");
        assert_eq!(item["name"], m.name.as_str());
        assert_eq!(item["description"], json!(m.description));
        assert_eq!(item["price"], money(m.price));
        assert_eq!(item["stock"], m.stock);
        assert_eq!(item["categoryId"], m.category.to_string());
        m.created_at = DateTime::parse_from_rfc3339(item["createdAt"].as_str().unwrap()).unwrap().to_utc();
    }
    (categories, made)
}

/// Every combination below is answered exactly as the test computes it from what it created:
/// the ids of `data` in order, and `meta` field for field. Equal prices, equal names and (for
/// `orderBy=id`) everything are ordered by id in the requested direction.
#[tokio::test]
async fn product_list_filters_sorts_and_pages_as_computed_independently() {
    let app = spawn_app().await;
    let admin = admin(&app).await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;
    let (categories, made) = seed_catalogue(&app, &admin, &vendor).await;

    // The data set really has the ties the sort must break.
    let cheapest_ties = made.iter().filter(|m| m.price == 130).count();
    assert!(cheapest_ties >= 3, "several products share a price");
    assert_eq!(made.iter().filter(|m| m.name == "Mint 01").count(), 5, "several products share a name");
    assert!(made.iter().any(|m| m.stock == 0) && made.iter().any(|m| m.stock > 0));

    let mut cases: Vec<Case> = vec![
        Case::default(),
        Case { page: Some(2), ..Default::default() },
        Case { order: Some("asc"), ..Default::default() },
        Case { order: Some("desc"), limit: Some(15), page: Some(3), ..Default::default() },
        Case { order_by: Some("id"), limit: Some(100), ..Default::default() },
        Case { order_by: Some("id"), order: Some("desc"), limit: Some(100), ..Default::default() },
        Case { order_by: Some("name"), limit: Some(100), ..Default::default() },
        Case { order_by: Some("name"), order: Some("desc"), limit: Some(100), ..Default::default() },
        Case { order_by: Some("createdAt"), limit: Some(100), ..Default::default() },
        Case { order_by: Some("createdAt"), order: Some("desc"), limit: Some(9), page: Some(2), ..Default::default() },
        Case { order_by: Some("price"), order: Some("desc"), limit: Some(500), ..Default::default() },
        Case { category: Some(0), order_by: Some("price"), ..Default::default() },
        Case { category: Some(1), in_stock: Some(true), order_by: Some("name"), ..Default::default() },
        Case { in_stock: Some(false), order_by: Some("price"), order: Some("desc"), ..Default::default() },
        Case { in_stock: Some(true), limit: Some(100), ..Default::default() },
        // Inclusive bounds that are themselves prices in the set.
        Case { min: Some(255), max: Some(880), order_by: Some("price"), limit: Some(100), ..Default::default() },
        Case { min: Some(1255), order_by: Some("price"), order: Some("desc"), ..Default::default() },
        Case { max: Some(5), ..Default::default() },
        Case { max: Some(4), ..Default::default() },
        Case { search: Some("BERRY"), order_by: Some("name"), order: Some("desc"), ..Default::default() },
        Case { search: Some("ag"), order_by: Some("id"), ..Default::default() },
        Case { search: Some("perennial"), category: Some(2), in_stock: Some(true), ..Default::default() },
        Case {
            search: Some("e"),
            category: Some(0),
            min: Some(130),
            in_stock: Some(true),
            order_by: Some("createdAt"),
            order: Some("desc"),
            page: Some(2),
            limit: Some(3),
            ..Default::default()
        },
    ];
    // Every page of two sorts, with the last partial page and one page past the end.
    for page in 1..=7 {
        cases.push(Case { order_by: Some("price"), page: Some(page), limit: Some(7), ..Default::default() });
    }
    for page in 1..=3 {
        cases.push(Case {
            order_by: Some("name"),
            order: Some("desc"),
            page: Some(page),
            limit: Some(16),
            ..Default::default()
        });
    }

    for case in &cases {
        let (want_ids, want_meta) = case.expected(&made, &categories);
        let got = list(&app, &case.params(&categories)).await;
        assert_eq!(got["meta"], want_meta, "meta for {case:?}");
        assert_eq!(ids(&got), want_ids, "ids for {case:?}");
    }

    // The computation reaches the interesting edges (else the cases above would prove little).
    let edge = |c: Case| c.expected(&made, &categories);
    let (last, meta) = edge(Case { order_by: Some("price"), page: Some(6), limit: Some(7), ..Default::default() });
    assert_eq!((last.len(), &meta["hasMore"]), (5, &json!(false)), "page 6 of 7 per page is partial and last");
    let (past, _) = edge(Case { order_by: Some("price"), page: Some(7), limit: Some(7), ..Default::default() });
    assert!(past.is_empty());
    let (none, meta) = edge(Case { max: Some(4), ..Default::default() });
    assert!(none.is_empty() && meta["totalPages"] == 0);
}

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
