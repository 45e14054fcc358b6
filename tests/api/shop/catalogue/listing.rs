//! `GET /products` filters, sorts and pages exactly as an independent computation over the
//! products the test created says it should (ties broken by id in the same direction).

use chrono::DateTime;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, admin, user_with_role},
    shop::{create_category, create_product, money, product_body},
    spawn_app,
};

use super::{Made, id_of, ids, list, matches_search};

// ---------------------------------------------------------------------------------------------
// Filters, sorting and pagination against an independent computation
// ---------------------------------------------------------------------------------------------

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
