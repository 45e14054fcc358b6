//! The caller's own account: reading and renaming `/users/me` (also under concurrency), the
//! profile with its per-field validation, and password change.

use std::collections::HashSet;

use mash::users::entity::user;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::helpers::{
    accounts::{
        LOCALHOST, PASSWORD, assert_user_clean, audit_rows, get_authed, json_of, login, login_ok, me_status, register,
        register_named, send_json,
    },
    assert_error, spawn_app, spawn_app_with,
};

use super::refresh_status;

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
