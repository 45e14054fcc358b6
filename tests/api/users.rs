//! CONTRACT.md "Auth and users": `/users/me`, the profile, password change, admin user
//! management (roles, disable, soft delete, list filters and paging), the "no secret in any
//! user JSON" rule, and the audit rows of these changes.

use std::collections::HashSet;

use mash::users::entity::user;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{
        LOCALHOST, PASSWORD, admin, assert_no_secrets, assert_user_clean, audit_rows, authed, get_authed, json_of,
        jwt_part, login, login_ok, me_status, post_json, refresh, register, register_named, send_json, user_with_role,
    },
    assert_error, ids, spawn_app, spawn_app_with,
};

async fn refresh_status(app: &TestApp, token: &str) -> u16 {
    refresh(app, token).await.status().as_u16()
}

// ---------------------------------------------------------------------------------------------
// The caller's own account
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn me_can_be_read_and_renamed_but_nothing_else() {
    let app = spawn_app().await;
    let a = register(&app, "me").await;
    let me = json_of(get_authed(&app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["id"], a.id.to_string());
    assert_eq!(me["email"], a.email);
    assert_eq!(me["role"], "CUSTOMER");
    assert_user_clean(&me, PASSWORD);

    let res = send_json(&app, Method::PATCH, "/api/v1/users/me", &a.access, json!({ "name": "  Grace Hopper " })).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["name"], "Grace Hopper");
    assert_user_clean(&body, PASSWORD);
    let me = json_of(get_authed(&app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["name"], "Grace Hopper");
    // The read (its own column list and, on PostgreSQL, its own row decoding) shows exactly what
    // the update returned from the whole row: every field in its place, `updatedAt` now later
    // than `createdAt`.
    assert_eq!(me, body);
    let at = |f: &str| chrono::DateTime::parse_from_rfc3339(me[f].as_str().unwrap()).unwrap();
    assert!(at("updatedAt") > at("createdAt"), "{me}");

    let res = send_json(&app, Method::PATCH, "/api/v1/users/me", &a.access, json!({ "name": "" })).await;
    let body = assert_error(res, 400, "/api/v1/users/me").await;
    assert_eq!(body["details"][0]["field"], "name", "{body}");
    let res = send_json(&app, Method::PATCH, "/api/v1/users/me", &a.access, json!({ "name": "x".repeat(201) })).await;
    assert_error(res, 400, "/api/v1/users/me").await;
    let res = send_json(&app, Method::PATCH, "/api/v1/users/me", &a.access, json!({ "name": " \t " })).await;
    let body = assert_error(res, 400, "/api/v1/users/me").await;
    assert_eq!(body["details"][0]["field"], "name", "{body}");
    let me = json_of(get_authed(&app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["name"], "Grace Hopper", "a refused change changes nothing");

    // No way to grant oneself a role, or change email or hash, through this route.
    for sneaky in [json!({ "role": "ADMIN" }), json!({ "email": "new@example.com" }), json!({ "passwordHash": "x" })] {
        let res = send_json(&app, Method::PATCH, "/api/v1/users/me", &a.access, sneaky.clone()).await;
        assert_error(res, 400, "/api/v1/users/me").await;
    }
    let row = user::Entity::find_by_id(a.id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.role, "CUSTOMER");
    assert_eq!(row.email, a.email);

    assert_error(app.get("/api/v1/users/me").await, 401, "/api/v1/users/me").await;
}

/// `GET /users/me` reads are batched across requests (`db::batch`): under concurrent load one
/// query answers many callers. Each must still get exactly its own account, a deleted account
/// in the same batch must still be refused, and a rename must show on the very next read.
#[tokio::test]
async fn concurrent_reads_of_me_each_get_their_own_account() {
    // A pool of 4: one batch at a time, so concurrent reads queue into shared batches.
    let app = spawn_app_with(&[("DB_MAX_CONNECTIONS", "4")], axum::Router::new()).await;
    let (mut accounts, mut names) = (Vec::new(), std::collections::HashMap::new());
    for i in 0..8 {
        let name = format!("Batch Reader {i}");
        let a = register_named(&app, &format!("batch{i}"), &name).await;
        names.insert(a.id, name);
        accounts.push(a);
    }
    let gone = register(&app, "batchgone").await;
    user::Entity::update_many()
        .col_expr(user::Column::DeletedAt, sea_orm::sea_query::Expr::value(chrono::Utc::now()))
        .filter(user::Column::Id.eq(gone.id))
        .exec(&app.state.db)
        .await
        .unwrap();

    let rounds = 6;
    let (app, mut reads) = (&app, Vec::new());
    for _ in 0..rounds {
        for a in accounts.iter().chain([&gone]) {
            reads.push(async move { (a, get_authed(app, "/api/v1/users/me", &a.access).await) });
        }
    }
    let total = reads.len();
    for (a, res) in futures_util::future::join_all(reads).await {
        if a.id == gone.id {
            assert_error(res, 401, "/api/v1/users/me").await;
            continue;
        }
        let me = json_of(res, 200).await;
        assert_eq!(
            (me["id"].as_str(), me["email"].as_str()),
            (Some(a.id.to_string().as_str()), Some(a.email.as_str()))
        );
        assert_eq!(me["name"], names[&a.id], "{me}");
    }

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let count = |name: &str| -> u64 {
        let line = format!("{name}{{read=\"user_views\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let (answered, queries) = (count("db_batched_reads_total"), count("db_batch_queries_total"));
    assert_eq!(answered, total as u64, "{metrics}");
    assert!(queries < answered, "{total} concurrent reads took {queries} queries");

    // Read-your-writes: a rename is seen by the next read, batched or not.
    let a = &accounts[0];
    let res = send_json(app, Method::PATCH, "/api/v1/users/me", &a.access, json!({ "name": "Renamed" })).await;
    json_of(res, 200).await;
    let me = json_of(get_authed(app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["name"], "Renamed");
}

#[tokio::test]
async fn profile_is_replaced_and_validated_per_field() {
    let app = spawn_app().await;
    let a = register(&app, "profile").await;
    let empty = json_of(get_authed(&app, "/api/v1/users/me/profile", &a.access).await, 200).await;
    for f in ["avatarUrl", "phone", "address", "bio", "preferences"] {
        assert!(empty[f].is_null(), "{f}: {empty}");
    }

    let full = json!({
        "avatarUrl": "https://cdn.example.com/a.png",
        "phone": "+1 (555) 010-9999",
        "address": "1 Greenhouse Way",
        "bio": "Grows mushrooms.",
        "preferences": { "units": "metric", "notifications": { "email": true } }
    });
    let res = send_json(&app, Method::PUT, "/api/v1/users/me/profile", &a.access, full.clone()).await;
    let body = json_of(res, 200).await;
    for f in ["avatarUrl", "phone", "address", "bio", "preferences"] {
        assert_eq!(body[f], full[f], "{f}");
    }
    let got = json_of(get_authed(&app, "/api/v1/users/me/profile", &a.access).await, 200).await;
    for f in ["avatarUrl", "phone", "address", "bio", "preferences"] {
        assert_eq!(got[f], full[f], "{f}");
    }
    chrono::DateTime::parse_from_rfc3339(got["updatedAt"].as_str().unwrap()).unwrap();

    // PUT replaces: fields left out become empty.
    let res = send_json(&app, Method::PUT, "/api/v1/users/me/profile", &a.access, json!({ "bio": "Only this" })).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["bio"], "Only this");
    assert!(body["avatarUrl"].is_null() && body["phone"].is_null() && body["preferences"].is_null(), "{body}");

    // Each bad field is named, in camelCase.
    let bad = json!({
        "avatarUrl": "javascript:alert(1)",
        "phone": "call me maybe",
        "preferences": ["not", "an", "object"],
        "address": "x".repeat(501),
    });
    let res = send_json(&app, Method::PUT, "/api/v1/users/me/profile", &a.access, bad).await;
    let body = assert_error(res, 400, "/api/v1/users/me/profile").await;
    let fields: HashSet<&str> =
        body["details"].as_array().expect("details").iter().filter_map(|d| d["field"].as_str()).collect();
    for f in ["avatarUrl", "phone", "preferences", "address"] {
        assert!(fields.contains(f), "{f} missing from {body}");
    }
    // A phone that fits the digit rule but not the column (32), a long bio, an unknown field.
    let long_phone = "+1 - 555 - 010 - 9999 - 1234 - 56";
    for (bad, field) in [
        (json!({ "phone": long_phone }), "phone"),
        (json!({ "bio": "b".repeat(2001) }), "bio"),
        (json!({ "nickname": "x" }), ""),
    ] {
        let res = send_json(&app, Method::PUT, "/api/v1/users/me/profile", &a.access, bad.clone()).await;
        let body = assert_error(res, 400, "/api/v1/users/me/profile").await;
        if !field.is_empty() {
            assert_eq!(body["details"][0]["field"], field, "{body}");
        }
    }
    // Nothing of the refused requests was stored.
    let got = json_of(get_authed(&app, "/api/v1/users/me/profile", &a.access).await, 200).await;
    assert_eq!(got["bio"], "Only this");
    assert!(got["phone"].is_null());

    // Profiles are per user.
    let b = register(&app, "other").await;
    let theirs = json_of(get_authed(&app, "/api/v1/users/me/profile", &b.access).await, 200).await;
    assert!(theirs["bio"].is_null());
    assert_error(app.get("/api/v1/users/me/profile").await, 401, "/api/v1/users/me/profile").await;
}

#[tokio::test]
async fn password_change_checks_the_old_one_and_ends_other_sessions() {
    let app = spawn_app().await;
    let a = register(&app, "pw").await;
    let other = login_ok(&app, &a.email, PASSWORD).await;
    const NEW: &str = "a brand new passphrase 42";
    let path = "/api/v1/users/me/password";

    let res = send_json(
        &app,
        Method::POST,
        path,
        &a.access,
        json!({ "currentPassword": "not my password", "newPassword": NEW }),
    )
    .await;
    let body = assert_error(res, 400, path).await;
    assert_eq!(body["details"][0]["field"], "currentPassword", "{body}");
    let res =
        send_json(&app, Method::POST, path, &a.access, json!({ "currentPassword": "", "newPassword": NEW })).await;
    let body = assert_error(res, 400, path).await;
    assert_eq!(body["details"][0]["field"], "currentPassword", "camelCase as sent: {body}");

    for weak in ["short", "password123"] {
        let res =
            send_json(&app, Method::POST, path, &a.access, json!({ "currentPassword": PASSWORD, "newPassword": weak }))
                .await;
        let body = assert_error(res, 400, path).await;
        assert_eq!(body["details"][0]["field"], "newPassword", "{body}");
    }
    // Nothing changed so far.
    assert_eq!(me_status(&app, &other.access).await, 200);
    login_ok(&app, &a.email, PASSWORD).await;

    let res =
        send_json(&app, Method::POST, path, &a.access, json!({ "currentPassword": PASSWORD, "newPassword": NEW }))
            .await;
    assert_eq!(res.status(), 204);
    // Other sessions end at once; this one keeps working (refresh included).
    assert_eq!(me_status(&app, &other.access).await, 401);
    assert_eq!(refresh_status(&app, &other.refresh).await, 401);
    assert_eq!(me_status(&app, &a.access).await, 200);
    assert_eq!(refresh_status(&app, &a.refresh).await, 200);
    // The new password signs in, the old one does not.
    assert_eq!(login(&app, &a.email, PASSWORD).await.status(), 401);
    login_ok(&app, &a.email, NEW).await;

    // Audited with the actor, the client address, and no password in the details.
    let rows = audit_rows(&app, "user.password_changed").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(a.id));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    let details = rows[0].details.clone().unwrap_or_default().to_string();
    assert!(!details.contains(NEW) && !details.contains(PASSWORD), "{details}");
}

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

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    json_of(get_authed(app, &format!("/api/v1/users{query}"), token).await, 200).await
}

async fn live_count(app: &TestApp, role: Option<&str>) -> u64 {
    let mut q = user::Entity::find().filter(user::Column::DeletedAt.is_null());
    if let Some(r) = role {
        q = q.filter(user::Column::Role.eq(r));
    }
    q.count(&app.state.db).await.unwrap()
}

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

// ---------------------------------------------------------------------------------------------
// Admin: changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn role_change_ends_the_users_sessions() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let t = register(&app, "promote").await;
    let path = format!("/api/v1/users/{}", t.id);

    let got = json_of(get_authed(&app, &path, &boss.access).await, 200).await;
    assert_eq!(got["id"], t.id.to_string());
    assert_user_clean(&got, PASSWORD);

    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "role": "GROWER" })).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["role"], "GROWER");
    assert_user_clean(&body, PASSWORD);
    // The old token carried the old role: it stops working at once, and so does its refresh.
    assert_eq!(me_status(&app, &t.access).await, 401);
    assert_eq!(refresh_status(&app, &t.refresh).await, 401);
    let again = login_ok(&app, &t.email, PASSWORD).await;
    assert_eq!(jwt_part(&again.access, 1)["role"], "GROWER");
    let me = json_of(get_authed(&app, "/api/v1/users/me", &again.access).await, 200).await;
    assert_eq!(me["role"], "GROWER");

    // Setting the same role again ends nothing.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "role": "GROWER" })).await;
    json_of(res, 200).await;
    assert_eq!(me_status(&app, &again.access).await, 200);
    // A rename alone ends nothing either.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "Renamed" })).await;
    assert_eq!(json_of(res, 200).await["name"], "Renamed");
    assert_eq!(me_status(&app, &again.access).await, 200);

    // Bad input and unknown users.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "role": "admin" })).await;
    let body = assert_error(res, 400, &path).await;
    assert_eq!(body["details"][0]["field"], "role", "{body}");
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "passwordHash": "x" })).await;
    assert_error(res, 400, &path).await;
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "   " })).await;
    let body = assert_error(res, 400, &path).await;
    assert_eq!(body["details"][0]["field"], "name", "{body}");
    let missing = format!("/api/v1/users/{}", Uuid::now_v7());
    let res = send_json(&app, Method::PATCH, &missing, &boss.access, json!({ "name": "x" })).await;
    assert_error(res, 404, &missing).await;
    assert_error(get_authed(&app, &missing, &boss.access).await, 404, &missing).await;
    let res = get_authed(&app, "/api/v1/users/not-a-uuid", &boss.access).await;
    assert_error(res, 400, "/api/v1/users/not-a-uuid").await;

    // Audited: by the admin, on the user, from the client's address.
    let rows = audit_rows(&app, "user.role_changed").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user_id, Some(boss.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(t.id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    let d = rows[0].details.clone().unwrap();
    assert_eq!((d["from"].as_str(), d["to"].as_str()), (Some("CUSTOMER"), Some("GROWER")));
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_sign_in() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let t = register(&app, "disable").await;
    let path = format!("/api/v1/users/{}", t.id);

    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "disabled": true })).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["disabled"], true);
    assert_error(get_authed(&app, "/api/v1/users/me", &t.access).await, 401, "/api/v1/users/me").await;
    assert_eq!(refresh_status(&app, &t.refresh).await, 401);
    let res = login(&app, &t.email, PASSWORD).await;
    let refused = assert_error(res, 401, "/api/v1/auth/login").await;
    let wrong = assert_error(login(&app, &t.email, "wrong password x").await, 401, "/api/v1/auth/login").await;
    assert_eq!(refused["message"], wrong["message"], "a disabled account looks like bad credentials");
    // Still listed (disabled, not deleted), and shown as disabled.
    let got = json_of(get_authed(&app, &path, &boss.access).await, 200).await;
    assert_eq!(got["disabled"], true);

    // Enabled again: the same password signs in.
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "disabled": false })).await;
    assert_eq!(json_of(res, 200).await["disabled"], false);
    let back = login_ok(&app, &t.email, PASSWORD).await;
    assert_eq!(me_status(&app, &back.access).await, 200);

    // Admins cannot disable or demote themselves.
    let own = format!("/api/v1/users/{}", boss.id);
    for body in [json!({ "disabled": true }), json!({ "role": "CUSTOMER" })] {
        let res = send_json(&app, Method::PATCH, &own, &boss.access, body).await;
        assert_error(res, 422, &own).await;
    }
    assert_eq!(me_status(&app, &boss.access).await, 200);

    let rows = audit_rows(&app, "user.disabled").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(boss.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(t.id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    assert_eq!(audit_rows(&app, "user.enabled").await.len(), 1);
}

#[tokio::test]
async fn deleting_a_user_is_a_soft_delete_that_ends_everything() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    let t = register(&app, "delete").await;
    let path = format!("/api/v1/users/{}", t.id);

    let res = authed(&app, Method::DELETE, &path, &boss.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_error(get_authed(&app, &path, &boss.access).await, 404, &path).await;
    let res = authed(&app, Method::DELETE, &path, &boss.access).send().await.unwrap();
    assert_error(res, 404, &path).await;
    let res = send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "zombie" })).await;
    assert_error(res, 404, &path).await;
    assert_eq!(me_status(&app, &t.access).await, 401);
    assert_eq!(refresh_status(&app, &t.refresh).await, 401);
    assert_eq!(login(&app, &t.email, PASSWORD).await.status(), 401);
    let body = list(&app, &boss.access, "").await;
    assert!(!ids(&body).contains(&t.id.to_string()));
    // Soft: the row is still there, marked deleted; the email stays reserved.
    let row = user::Entity::find_by_id(t.id).one(&app.state.db).await.unwrap().expect("row kept");
    assert!(row.deleted_at.is_some());
    let res =
        post_json(&app, "/api/v1/auth/register", json!({ "email": t.email, "password": PASSWORD, "name": "Again" }))
            .await;
    assert_error(res, 409, "/api/v1/auth/register").await;

    // Admins cannot delete themselves.
    let own = format!("/api/v1/users/{}", boss.id);
    let res = authed(&app, Method::DELETE, &own, &boss.access).send().await.unwrap();
    assert_error(res, 422, &own).await;
    assert_eq!(me_status(&app, &boss.access).await, 200);

    let rows = audit_rows(&app, "user.deleted").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(boss.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(t.id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
}

// ---------------------------------------------------------------------------------------------
// No secret in any user JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_user_json_ever_carries_a_secret() {
    let app = spawn_app().await;
    let boss = admin(&app).await;
    // A user with MFA on, so the row holds a TOTP secret and backup codes too.
    let email = crate::helpers::accounts::unique_email("secretive");
    const OWN: &str = "my very own secret passphrase";
    let res = post_json(&app, "/api/v1/auth/register", json!({ "email": email, "password": OWN, "name": "S" })).await;
    let body = json_of(res, 201).await;
    assert_no_secrets(&body, OWN);
    assert_user_clean(&body["user"], OWN);
    let access = body["accessToken"].as_str().unwrap().to_string();
    let id = body["user"]["id"].as_str().unwrap().to_string();

    let body = json_of(login(&app, &email, OWN).await, 200).await;
    assert_no_secrets(&body, OWN);
    assert_user_clean(&body["user"], OWN);
    let me = json_of(get_authed(&app, "/api/v1/users/me", &access).await, 200).await;
    assert_user_clean(&me, OWN);

    let res = authed(&app, Method::POST, "/api/v1/auth/mfa/totp/enroll", &access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let row = user::Entity::find_by_id(id.parse::<Uuid>().unwrap()).one(&app.state.db).await.unwrap().unwrap();
    let pending = row.totp_pending_enc.clone().expect("pending secret stored");
    assert!(row.password_hash.as_deref().is_some_and(|h| h.starts_with("$argon2")));

    let check = |v: &Value| {
        assert_user_clean(v, OWN);
        assert!(!v.to_string().contains(&pending), "{v}");
    };
    check(&json_of(get_authed(&app, "/api/v1/users/me", &access).await, 200).await);
    let listed = list(&app, &boss.access, "?limit=100").await;
    assert_no_secrets(&listed, OWN);
    for u in listed["data"].as_array().unwrap() {
        check(u);
    }
    let path = format!("/api/v1/users/{id}");
    check(&json_of(get_authed(&app, &path, &boss.access).await, 200).await);
    check(&json_of(send_json(&app, Method::PATCH, &path, &boss.access, json!({ "name": "Renamed" })).await, 200).await);
    check(
        &json_of(send_json(&app, Method::PATCH, "/api/v1/users/me", &access, json!({ "name": "Mine" })).await, 200)
            .await,
    );
    // Error bodies do not echo the password either.
    let res = post_json(&app, "/api/v1/auth/register", json!({ "email": email, "password": OWN, "name": "S" })).await;
    assert_no_secrets(&assert_error(res, 409, "/api/v1/auth/register").await, OWN);
    let res = login(&app, &email, "wrong but long password").await;
    assert_no_secrets(&assert_error(res, 401, "/api/v1/auth/login").await, "wrong but long password");
}
