//! Refresh rotation and reuse detection, logout, and the caller's sessions (listing with the
//! current one flagged, deleting one).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{
        Account, LOCALHOST, PASSWORD, USER_AGENT, account_from, authed, get_authed, json_of, jwt_part, login_ok,
        me_status, post_json, refresh, register, sid,
    },
    assert_error, spawn_app,
};

// ---------------------------------------------------------------------------------------------
// Refresh
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session() {
    let app = spawn_app().await;
    let a = register(&app, "rotate").await;
    let other = login_ok(&app, &a.email, PASSWORD).await;

    let r1 = json_of(refresh(&app, &a.refresh).await, 200).await;
    assert_eq!(r1["tokenType"], "Bearer");
    assert_eq!(r1["expiresIn"], 900);
    let (access1, refresh1) = (r1["accessToken"].as_str().unwrap(), r1["refreshToken"].as_str().unwrap());
    assert_ne!(refresh1, a.refresh);
    assert_ne!(access1, a.access);
    assert_eq!(jwt_part(access1, 1)["sid"], jwt_part(&a.access, 1)["sid"], "same session");
    assert_eq!(me_status(&app, access1).await, 200);

    // The presented token stopped working: using it again is reuse, and ends the session.
    let res = refresh(&app, &a.refresh).await;
    assert_error(res, 401, "/api/v1/auth/refresh").await;
    // Every token of that session is dead: the newest refresh token and the access tokens.
    assert_error(refresh(&app, refresh1).await, 401, "/api/v1/auth/refresh").await;
    assert_error(get_authed(&app, "/api/v1/users/me", access1).await, 401, "/api/v1/users/me").await;
    assert_eq!(me_status(&app, &a.access).await, 401);
    // Another session of the same user is untouched.
    assert_eq!(me_status(&app, &other.access).await, 200);
    json_of(refresh(&app, &other.refresh).await, 200).await;

    let session_id: Uuid = jwt_part(&a.access, 1)["sid"].as_str().unwrap().parse().unwrap();
    let s = mash::auth::entity::session::Entity::find_by_id(session_id).one(&app.state.db).await.unwrap().unwrap();
    assert!(s.revoked_at.is_some());
    assert_eq!(s.revoked_reason.as_deref(), Some("refresh_reuse"));

    // An expired refresh token is refused even though it was never used.
    let fresh = login_ok(&app, &a.email, PASSWORD).await;
    mash::auth::entity::refresh_token::Entity::update_many()
        .col_expr(
            mash::auth::entity::refresh_token::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(
            mash::auth::entity::refresh_token::Column::TokenHash.eq(mash::auth::secrets::token_hash(&fresh.refresh)),
        )
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_error(refresh(&app, &fresh.refresh).await, 401, "/api/v1/auth/refresh").await;

    // Garbage is a plain 401; an empty token is a 400 naming it.
    assert_error(refresh(&app, "not-a-token").await, 401, "/api/v1/auth/refresh").await;
    let body = assert_error(refresh(&app, "").await, 400, "/api/v1/auth/refresh").await;
    assert_eq!(body["details"][0]["field"], "refreshToken", "{body}");
}

#[tokio::test]
async fn refresh_chain_keeps_working_until_reuse() {
    let app = spawn_app().await;
    let a = register(&app, "chain").await;
    let mut current = a.refresh.clone();
    let mut seen = vec![current.clone()];
    for _ in 0..3 {
        let r = json_of(refresh(&app, &current).await, 200).await;
        current = r["refreshToken"].as_str().unwrap().to_string();
        assert!(!seen.contains(&current), "every rotation is a new token");
        seen.push(current.clone());
        assert_eq!(me_status(&app, r["accessToken"].as_str().unwrap()).await, 200);
    }
    // Reusing a token from the middle of the chain kills its descendants too.
    assert_eq!(refresh(&app, &seen[1]).await.status(), 401);
    assert_eq!(refresh(&app, &current).await.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_ends_that_session_at_once() {
    let app = spawn_app().await;
    let a = register(&app, "logout").await;
    let other = login_ok(&app, &a.email, PASSWORD).await;
    assert_eq!(me_status(&app, &a.access).await, 200);

    let res = post_json(&app, "/api/v1/auth/logout", json!({ "refreshToken": a.refresh })).await;
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty());

    // The very next request with its access token is refused.
    let body = assert_error(get_authed(&app, "/api/v1/users/me", &a.access).await, 401, "/api/v1/users/me").await;
    assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
    assert_error(refresh(&app, &a.refresh).await, 401, "/api/v1/auth/refresh").await;
    // The other session lives on.
    assert_eq!(me_status(&app, &other.access).await, 200);

    let res = post_json(&app, "/api/v1/auth/logout", json!({ "refreshToken": "nonsense" })).await;
    assert_error(res, 401, "/api/v1/auth/logout").await;
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

async fn login_on_device(app: &TestApp, email: &str, device_id: &str, device_name: &str) -> Account {
    let res = post_json(
        app,
        "/api/v1/auth/login",
        json!({ "email": email, "password": PASSWORD, "deviceId": device_id, "deviceName": device_name }),
    )
    .await;
    account_from(&json_of(res, 200).await, email, PASSWORD)
}

#[tokio::test]
async fn sessions_list_the_callers_devices_with_a_current_flag() {
    let app = spawn_app().await;
    let a = register(&app, "sessions").await;
    let phone = login_on_device(&app, &a.email, "phone-123", "Ada's Pixel").await;
    let laptop = login_on_device(&app, &a.email, "laptop-9", "Work laptop").await;
    let stranger = register(&app, "stranger").await;

    let body = json_of(get_authed(&app, "/api/v1/auth/sessions", &phone.access).await, 200).await;
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 3, "register + two logins: {body}");
    let ids: Vec<&str> = data.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&sid(&stranger.access).as_str()), "only the caller's sessions");
    let current: Vec<&Value> = data.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{body}");
    assert_eq!(current[0]["id"], sid(&phone.access));
    assert_eq!(current[0]["deviceId"], "phone-123");
    assert_eq!(current[0]["deviceName"], "Ada's Pixel");
    let laptop_row = data.iter().find(|s| s["id"] == sid(&laptop.access).as_str()).expect("laptop session");
    assert_eq!(laptop_row["deviceName"], "Work laptop");
    assert_eq!(laptop_row["current"], false);
    for s in data {
        assert_eq!(s["ipAddress"], LOCALHOST, "{s}");
        assert_eq!(s["userAgent"], USER_AGENT, "{s}");
        for ts in ["createdAt", "lastUsedAt"] {
            chrono::DateTime::parse_from_rfc3339(s[ts].as_str().expect(ts)).expect("RFC 3339");
        }
    }
    // The laptop sees the same sessions, with itself as current.
    let body = json_of(get_authed(&app, "/api/v1/auth/sessions", &laptop.access).await, 200).await;
    let current: Vec<&Value> = body["data"].as_array().unwrap().iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], sid(&laptop.access));

    // Signing in again on a known device renames it when a new name is given, keeps it otherwise.
    login_on_device(&app, &a.email, "phone-123", "Ada's new Pixel").await;
    let res = post_json(
        &app,
        "/api/v1/auth/login",
        json!({ "email": a.email, "password": PASSWORD, "deviceId": "phone-123" }),
    )
    .await;
    json_of(res, 200).await;
    let body = json_of(get_authed(&app, "/api/v1/auth/sessions", &phone.access).await, 200).await;
    let on_phone: Vec<&Value> =
        body["data"].as_array().unwrap().iter().filter(|s| s["deviceId"] == "phone-123").collect();
    assert_eq!(on_phone.len(), 3, "{body}");
    assert!(on_phone.iter().all(|s| s["deviceName"] == "Ada's new Pixel"), "{body}");

    assert_error(app.get("/api/v1/auth/sessions").await, 401, "/api/v1/auth/sessions").await;
}

#[tokio::test]
async fn deleting_a_session_ends_it_at_once_and_only_for_its_owner() {
    let app = spawn_app().await;
    let a = register(&app, "del").await;
    let a2 = login_on_device(&app, &a.email, "tablet", "Tablet").await;
    let b = register(&app, "other").await;

    // Someone else's session id is not found, and that session keeps working.
    let path = format!("/api/v1/auth/sessions/{}", sid(&b.access));
    let res = authed(&app, reqwest::Method::DELETE, &path, &a.access).send().await.unwrap();
    assert_error(res, 404, &path).await;
    assert_eq!(me_status(&app, &b.access).await, 200);
    json_of(refresh(&app, &b.refresh).await, 200).await;

    // Another of my sessions: gone immediately, refresh included.
    let path = format!("/api/v1/auth/sessions/{}", sid(&a2.access));
    let res = authed(&app, reqwest::Method::DELETE, &path, &a.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(me_status(&app, &a2.access).await, 401);
    assert_eq!(refresh(&app, &a2.refresh).await.status(), 401);
    assert_eq!(me_status(&app, &a.access).await, 200, "the caller's own session is untouched");
    let listed = json_of(get_authed(&app, "/api/v1/auth/sessions", &a.access).await, 200).await;
    assert!(listed["data"].as_array().unwrap().iter().all(|s| s["id"] != sid(&a2.access).as_str()));

    // Deleting it again: not found. A random id: not found. Not a UUID: 400 naming it.
    let res = authed(&app, reqwest::Method::DELETE, &path, &a.access).send().await.unwrap();
    assert_error(res, 404, &path).await;
    let path = format!("/api/v1/auth/sessions/{}", Uuid::now_v7());
    let res = authed(&app, reqwest::Method::DELETE, &path, &a.access).send().await.unwrap();
    assert_error(res, 404, &path).await;
    let res =
        authed(&app, reqwest::Method::DELETE, "/api/v1/auth/sessions/not-a-uuid", &a.access).send().await.unwrap();
    let body = assert_error(res, 400, "/api/v1/auth/sessions/not-a-uuid").await;
    assert_eq!(body["details"][0]["field"], "id", "{body}");

    // Deleting the current session signs this device out.
    let path = format!("/api/v1/auth/sessions/{}", sid(&a.access));
    assert_eq!(authed(&app, reqwest::Method::DELETE, &path, &a.access).send().await.unwrap().status(), 204);
    assert_eq!(me_status(&app, &a.access).await, 401);
    assert_eq!(me_status(&app, &b.access).await, 200);
}
