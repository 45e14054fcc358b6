//! Admin user management: who may use the admin routes, and the user list with its filters
//! and paging.

use std::collections::HashSet;

use mash::users::entity::user;
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{
    accounts::{
        PASSWORD, admin, assert_user_clean, authed, get_authed, jwt_part, me_status, register, register_named,
        user_with_role,
    },
    assert_error, ids, spawn_app,
};

use super::{list, live_count};

// ---------------------------------------------------------------------------------------------
// Admin: who may
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_routes_are_403_for_every_other_role_and_401_without_a_token() {
    let app = spawn_app().await;
    let target = register(&app, "target").await;
    let user_path = format!("/api/v1/users/{}", target.id);
    let mut callers = vec![register(&app, "customer").await];
    callers.push(user_with_role(&app, "grower", "GROWER").await);
    callers.push(user_with_role(&app, "vendor", "VENDOR").await);

    for caller in &callers {
        let role = jwt_part(&caller.access, 1)["role"].clone();
        let attempts: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/api/v1/users".into(), None),
            (Method::GET, "/api/v1/users?role=ADMIN".into(), None),
            (Method::GET, user_path.clone(), None),
            (Method::GET, format!("/api/v1/users/{}", caller.id), None),
            (Method::PATCH, user_path.clone(), Some(json!({ "role": "ADMIN" }))),
            (Method::PATCH, format!("/api/v1/users/{}", caller.id), Some(json!({ "role": "ADMIN" }))),
            (Method::PATCH, user_path.clone(), Some(json!({ "disabled": true }))),
            (Method::DELETE, user_path.clone(), None),
        ];
        for (method, path, body) in attempts {
            let mut req = authed(&app, method.clone(), &path, &caller.access);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let res = req.send().await.unwrap();
            let bare = path.split('?').next().unwrap();
            let err = assert_error(res, 403, bare).await;
            assert_eq!(err["error"], "Forbidden", "{role} {method} {path}: {err}");
        }
    }
    // Nothing happened to anyone.
    let row = user::Entity::find_by_id(target.id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.role, "CUSTOMER");
    assert!(row.disabled_at.is_none() && row.deleted_at.is_none());
    for c in &callers {
        let row = user::Entity::find_by_id(c.id).one(&app.state.db).await.unwrap().unwrap();
        assert_ne!(row.role, "ADMIN");
    }
    assert_eq!(me_status(&app, &target.access).await, 200);

    // No token at all: 401 everywhere.
    for (method, path) in [
        (Method::GET, "/api/v1/users".to_string()),
        (Method::GET, user_path.clone()),
        (Method::PATCH, user_path.clone()),
        (Method::DELETE, user_path.clone()),
    ] {
        let res = app.client.request(method, app.url(&path)).json(&json!({ "role": "ADMIN" })).send().await.unwrap();
        assert_error(res, 401, &path).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Admin: listing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_lists_users_with_filters_and_paging() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let mut growers = Vec::new();
    for i in 0..3 {
        growers.push(user_with_role(&app, &format!("grower{i}"), "GROWER").await);
    }
    let _ = register_named(&app, "mushroom", "Shiitake Searchable").await;
    let odd = register_named(&app, "percent", "100% Organic").await;
    for i in 0..3 {
        register(&app, &format!("cust{i}")).await;
    }
    let gone = register(&app, "gone").await;
    let res = authed(&app, Method::DELETE, &format!("/api/v1/users/{}", gone.id), &boss.access).send().await.unwrap();
    assert_eq!(res.status(), 204);

    // Paging: meta checked against the database, pages cover everything exactly once.
    let total = live_count(&app, None).await;
    assert_eq!(total, 1 + 3 + 2 + 3, "the deleted user is not counted");
    let limit = 3;
    let mut seen = Vec::new();
    let pages = total.div_ceil(limit);
    for page in 1..=pages {
        let body = list(&app, &boss.access, &format!("?page={page}&limit={limit}")).await;
        let meta = &body["meta"];
        assert_eq!(meta["page"], page, "{meta}");
        assert_eq!(meta["limit"], limit);
        assert_eq!(meta["total"], total);
        assert_eq!(meta["totalPages"], pages);
        assert_eq!(meta["hasMore"], page < pages, "{meta}");
        for u in body["data"].as_array().unwrap() {
            assert_user_clean(u, PASSWORD);
        }
        seen.extend(ids(&body));
    }
    assert_eq!(seen.len() as u64, total);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len(), "no user on two pages");
    assert!(!seen.contains(&gone.id.to_string()), "soft-deleted users are not listed");
    // Past the end: empty data, same total.
    let body = list(&app, &boss.access, &format!("?page={}&limit={limit}", pages + 1)).await;
    assert!(body["data"].as_array().unwrap().is_empty());
    assert_eq!(body["meta"]["hasMore"], false);
    // Defaults and the cap.
    let body = list(&app, &boss.access, "").await;
    assert_eq!(body["meta"]["page"], 1);
    assert_eq!(body["meta"]["limit"], 20);
    assert_eq!(body["data"].as_array().unwrap().len() as u64, total);
    let body = list(&app, &boss.access, "?limit=1000").await;
    assert_eq!(body["meta"]["limit"], 100);
    for bad in ["?page=0", "?limit=abc", "?role=SUPERUSER"] {
        let res = get_authed(&app, &format!("/api/v1/users{bad}"), &boss.access).await;
        let body = assert_error(res, 400, "/api/v1/users").await;
        assert!(body["details"][0]["field"].is_string(), "{bad}: {body}");
    }

    // Role filter.
    let body = list(&app, &boss.access, "?role=GROWER").await;
    assert_eq!(body["meta"]["total"], live_count(&app, Some("GROWER")).await);
    let got: HashSet<String> = ids(&body).into_iter().collect();
    let want: HashSet<String> = growers.iter().map(|g| g.id.to_string()).collect();
    assert_eq!(got, want);
    assert!(body["data"].as_array().unwrap().iter().all(|u| u["role"] == "GROWER"));
    let body = list(&app, &boss.access, "?role=ADMIN").await;
    assert_eq!(ids(&body), vec![boss.id.to_string()]);
    let body = list(&app, &boss.access, "?role=CUSTOMER&limit=2").await;
    assert_eq!(body["meta"]["total"], live_count(&app, Some("CUSTOMER")).await);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    // Search: case-insensitive, over name and email; wildcards match themselves.
    let body = list(&app, &boss.access, "?search=sEaRcHaBlE").await;
    assert_eq!(body["meta"]["total"], 1, "{body}");
    assert_eq!(body["data"][0]["name"], "Shiitake Searchable");
    let body = list(&app, &boss.access, &format!("?search={}", &growers[1].email[..12])).await;
    assert_eq!(ids(&body), vec![growers[1].id.to_string()]);
    let body = list(&app, &boss.access, "?search=%25").await;
    assert_eq!(ids(&body), vec![odd.id.to_string()], "a literal %");
    let body = list(&app, &boss.access, "?search=_").await;
    assert!(ids(&body).is_empty(), "a literal _ (no name or email has one): {body}");
    let body = list(&app, &boss.access, "?search=GROWER&role=GROWER").await;
    assert_eq!(body["meta"]["total"], 3, "search and role combine: {body}");
    let body = list(&app, &boss.access, "?search=nothing-matches-this").await;
    assert_eq!(body["meta"]["total"], 0);
    assert_eq!(body["meta"]["totalPages"], 0);
}
