//! CONTRACT.md "Auth and users": register, login, refresh rotation and reuse, logout, sessions,
//! access tokens and the JWKS, revocation (also across a restart and across instances over
//! Redis), lockout and per-IP limits, and the audit trail of sign-in events.

use std::time::Duration;

use axum::Router;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mash::{audit::entity as audit_log, users::entity::user};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{
        Account, LOCALHOST, PASSWORD, USER_AGENT, account_from, assert_audited, assert_no_secrets, assert_user_clean,
        audit_rows, authed, get_authed, json_of, jwt_part, login, login_ok, me_status, post_json, refresh, register,
        sid, unique_email,
    },
    assert_error, redis_url, spawn_app, spawn_app_with, two_instances_on_redis,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn retry_after(res: &reqwest::Response) -> u64 {
    let v = res.headers().get("retry-after").expect("Retry-After header").to_str().unwrap();
    let secs: u64 = v.parse().expect("Retry-After in seconds");
    assert!(secs >= 1, "{secs}");
    secs
}

/// Polls `GET /users/me` until it answers `status` or the deadline passes; returns the last status.
async fn poll_me_until(app: &TestApp, token: &str, status: u16, limit: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = me_status(app, token).await;
        if got == status || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Register
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_creates_a_customer_and_signs_it_in() {
    let app = spawn_app().await;
    let res = post_json(
        &app,
        "/api/v1/auth/register",
        json!({ "email": "Ada.Lovelace@Example.COM", "password": PASSWORD, "name": "  Ada Lovelace " }),
    )
    .await;
    let body = json_of(res, 201).await;
    assert_eq!(body["tokenType"], "Bearer", "{body}");
    assert_eq!(body["expiresIn"], 900, "{body}");
    let access = body["accessToken"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "a JWT");
    assert!(body["refreshToken"].as_str().is_some_and(|r| r.len() >= 32), "{body}");
    let u = &body["user"];
    assert_eq!(u["email"], "ada.lovelace@example.com", "stored normalized: {u}");
    assert_eq!(u["name"], "Ada Lovelace");
    assert_eq!(u["role"], "CUSTOMER");
    assert_eq!(u["mfaEnabled"], false);
    assert_eq!(u["disabled"], false);
    let id: Uuid = u["id"].as_str().unwrap().parse().unwrap();
    for ts in ["createdAt", "updatedAt"] {
        chrono::DateTime::parse_from_rfc3339(u[ts].as_str().unwrap()).expect("RFC 3339");
    }
    assert_no_secrets(&body, PASSWORD);
    assert_user_clean(u, PASSWORD);

    // The access token works and names this user and role.
    let claims = jwt_part(access, 1);
    assert_eq!(claims["sub"], id.to_string());
    assert_eq!(claims["role"], "CUSTOMER");
    let me = json_of(get_authed(&app, "/api/v1/users/me", access).await, 200).await;
    assert_eq!(me["id"], id.to_string());

    // The password is stored as an argon2id hash, never as itself.
    let row = user::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
    let hash = row.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    assert_eq!(audit_rows(&app, "user.register").await.len(), 1);
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_the_case_or_surrounding_space() {
    let app = spawn_app().await;
    let res = post_json(
        &app,
        "/api/v1/auth/register",
        json!({ "email": "dup@example.com", "password": PASSWORD, "name": "A" }),
    )
    .await;
    json_of(res, 201).await;
    for email in ["dup@example.com", "DUP@Example.com", "  dup@example.com  ", "\tDup@EXAMPLE.com"] {
        let res = post_json(
            &app,
            "/api/v1/auth/register",
            json!({ "email": email, "password": "another good passphrase", "name": "B" }),
        )
        .await;
        let body = assert_error(res, 409, "/api/v1/auth/register").await;
        assert_eq!(body["message"], "email already registered", "{email:?}: {body}");
    }
    let n = user::Entity::find().filter(user::Column::Email.eq("dup@example.com")).count(&app.state.db).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 1, "no near-duplicate row either");
    // The original password still works; the loser's does not.
    login_ok(&app, " DUP@example.com ", PASSWORD).await;
    assert_eq!(login(&app, "dup@example.com", "another good passphrase").await.status(), 401);
}

#[tokio::test]
async fn password_policy_is_400_naming_password() {
    let app = spawn_app().await;
    for bad in ["short1!", "password123", "PASSWORD123", ""] {
        let res = post_json(
            &app,
            "/api/v1/auth/register",
            json!({ "email": unique_email("weak"), "password": bad, "name": "Weak" }),
        )
        .await;
        let body = assert_error(res, 400, "/api/v1/auth/register").await;
        let details = body["details"].as_array().unwrap_or_else(|| panic!("details for {bad:?}: {body}"));
        assert!(details.iter().any(|d| d["field"] == "password"), "{bad:?}: {body}");
        assert!(details.iter().all(|d| d["message"].as_str().is_some_and(|m| !m.is_empty())));
    }
    // Other fields are named too.
    let res =
        post_json(&app, "/api/v1/auth/register", json!({ "email": "not-an-email", "password": PASSWORD, "name": "" }))
            .await;
    let body = assert_error(res, 400, "/api/v1/auth/register").await;
    let fields: Vec<&str> = body["details"].as_array().unwrap().iter().filter_map(|d| d["field"].as_str()).collect();
    assert!(fields.contains(&"email") && fields.contains(&"name"), "{body}");
    // A name of only spaces is no name (names are stored trimmed).
    let res = post_json(
        &app,
        "/api/v1/auth/register",
        json!({ "email": unique_email("blank"), "password": PASSWORD, "name": "   " }),
    )
    .await;
    let body = assert_error(res, 400, "/api/v1/auth/register").await;
    assert_eq!(body["details"][0]["field"], "name", "{body}");
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 0, "nothing was created");
}

#[tokio::test]
async fn register_cannot_choose_a_role() {
    let app = spawn_app().await;
    let email = unique_email("sneaky");
    let res = post_json(
        &app,
        "/api/v1/auth/register",
        json!({ "email": email, "password": PASSWORD, "name": "Sneaky", "role": "ADMIN", "emailVerified": true }),
    )
    .await;
    let body = json_of(res, 201).await;
    assert_eq!(body["user"]["role"], "CUSTOMER");
    assert_eq!(body["user"]["emailVerified"], false);
    assert_eq!(jwt_part(body["accessToken"].as_str().unwrap(), 1)["role"], "CUSTOMER");
    let res = get_authed(&app, "/api/v1/users", body["accessToken"].as_str().unwrap()).await;
    assert_error(res, 403, "/api/v1/users").await;
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_gives_tokens_and_wrong_credentials_are_one_401() {
    let app = spawn_app().await;
    let a = register(&app, "login").await;
    let res = login(&app, &a.email.to_uppercase(), PASSWORD).await;
    let body = json_of(res, 200).await;
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(body["user"]["id"], a.id.to_string());
    assert_user_clean(&body["user"], PASSWORD);
    assert_no_secrets(&body, PASSWORD);
    let fresh = account_from(&body, &a.email, PASSWORD);
    assert_ne!(fresh.refresh, a.refresh, "a new session");
    assert_eq!(me_status(&app, &fresh.access).await, 200);

    let wrong = assert_error(login(&app, &a.email, "not the password at all").await, 401, "/api/v1/auth/login").await;
    let unknown = assert_error(login(&app, "nobody-here@example.com", PASSWORD).await, 401, "/api/v1/auth/login").await;
    assert_eq!(wrong["message"], unknown["message"], "no hint whether the email exists");
    assert_eq!(wrong["error"], unknown["error"]);
    assert!(wrong.get("details").is_none_or(Value::is_null));

    // Malformed input is a 400, not a 401, naming the field as the client spelled it.
    let res = post_json(&app, "/api/v1/auth/login", json!({ "email": a.email })).await;
    assert_error(res, 400, "/api/v1/auth/login").await;
    let res = post_json(
        &app,
        "/api/v1/auth/login",
        json!({ "email": a.email, "password": PASSWORD, "deviceId": "d".repeat(129), "deviceName": "n".repeat(129) }),
    )
    .await;
    let body = assert_error(res, 400, "/api/v1/auth/login").await;
    let fields: Vec<&str> = body["details"].as_array().unwrap().iter().filter_map(|d| d["field"].as_str()).collect();
    assert!(fields.contains(&"deviceId") && fields.contains(&"deviceName"), "{body}");
}

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

// ---------------------------------------------------------------------------------------------
// Access tokens and the JWKS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tampered_garbage_and_forged_tokens_are_401() {
    let app = spawn_app().await;
    let a = register(&app, "tamper").await;
    let parts: Vec<&str> = a.access.split('.').collect();

    // Payload rewritten to claim ADMIN, signature kept.
    let mut claims = jwt_part(&a.access, 1);
    claims["role"] = json!("ADMIN");
    let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    // Signature changed in the middle.
    let mut sig = parts[2].to_string().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], String::from_utf8(sig).unwrap());
    // alg "none", no signature.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{forged_payload}.");

    for token in [forged.as_str(), bad_sig.as_str(), alg_none.as_str(), "garbage", "a.b.c", ""] {
        let res = get_authed(&app, "/api/v1/users/me", token).await;
        let body = assert_error(res, 401, "/api/v1/users/me").await;
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    // Missing header and the wrong scheme.
    assert_error(app.get("/api/v1/users/me").await, 401, "/api/v1/users/me").await;
    let res = app.client.get(app.url("/api/v1/users/me")).header("authorization", format!("Basic {}", a.access));
    assert_error(res.send().await.unwrap(), 401, "/api/v1/users/me").await;
    // Admin routes refuse the forged token with 401 (not 403, not 200).
    let res = get_authed(&app, "/api/v1/users", &forged).await;
    assert_error(res, 401, "/api/v1/users").await;
    // The genuine token still works.
    assert_eq!(me_status(&app, &a.access).await, 200);
}

#[tokio::test]
async fn an_expired_access_token_is_401_and_refresh_still_works() {
    let app = spawn_app_with(&[("ACCESS_TOKEN_TTL_SECS", "1")], Router::new()).await;
    let a = register(&app, "expire").await;
    let claims = jwt_part(&a.access, 1);
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 1, "{claims}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The server may allow a few seconds of clock skew; poll (bounded) for the refusal.
    let status = poll_me_until(&app, &a.access, 401, Duration::from_secs(15)).await;
    assert_eq!(status, 401, "an expired token must stop working");
    let body = assert_error(get_authed(&app, "/api/v1/users/me", &a.access).await, 401, "/api/v1/users/me").await;
    assert!(body["message"].as_str().unwrap().contains("expired"), "{body}");
    // The session itself is fine: refresh gives a working token.
    let r = json_of(refresh(&app, &a.refresh).await, 200).await;
    assert_eq!(r["expiresIn"], 1);
    assert_eq!(me_status(&app, r["accessToken"].as_str().unwrap()).await, 200);
}

#[tokio::test]
async fn jwks_publishes_the_key_that_signs_access_tokens() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    let app = spawn_app().await;
    let a = register(&app, "jwks").await;
    let res = app.get("/.well-known/jwks.json").await;
    let jwks = json_of(res, 200).await;
    let header = jwt_part(&a.access, 0);
    assert_eq!(header["alg"], "EdDSA", "{header}");
    let kid = header["kid"].as_str().expect("kid in the token header");
    let keys = jwks["keys"].as_array().expect("keys");
    let key = keys.iter().find(|k| k["kid"] == kid).unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "never the private part: {key}");

    // The published key really verifies the token (checked here, independently of the server).
    let x: [u8; 32] = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().try_into().expect("32-byte key");
    let public = VerifyingKey::from_bytes(&x).expect("a valid Ed25519 point");
    let (signing_input, sig) = a.access.rsplit_once('.').unwrap();
    let sig: [u8; 64] = URL_SAFE_NO_PAD.decode(sig).unwrap().try_into().expect("64-byte signature");
    public.verify(signing_input.as_bytes(), &Signature::from_bytes(&sig)).expect("signature verifies");
}

// ---------------------------------------------------------------------------------------------
// Revocation across a restart and across instances
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revocation_survives_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap().to_string();
    let overrides = [("MASH_DATA_DIR", dir.as_str())];
    let mut first = spawn_app_with(&overrides, Router::new()).await;
    let a = register(&first, "restart").await;
    let kept = login_ok(&first, &a.email, PASSWORD).await;
    let path = format!("/api/v1/auth/sessions/{}", sid(&a.access));
    assert_eq!(authed(&first, reqwest::Method::DELETE, &path, &kept.access).send().await.unwrap().status(), 204);
    assert_eq!(me_status(&first, &a.access).await, 401);

    // Stop the first process; start a new one on the same database and keys.
    first.begin_shutdown().await.unwrap().unwrap();
    let second = first.spawn_sibling(&overrides).await;
    assert_eq!(me_status(&second, &kept.access).await, 200, "same keys: a live token still works");
    let body = assert_error(get_authed(&second, "/api/v1/users/me", &a.access).await, 401, "/api/v1/users/me").await;
    assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
    assert_eq!(refresh(&second, &a.refresh).await.status(), 401);
}

#[tokio::test]
async fn revocation_reaches_another_instance_over_redis() {
    // Only Redis can deliver within the test: the database sync is an hour away.
    let (a_app, b_app, _dir) = two_instances_on_redis(&[("REVOCATION_SYNC_SECS", "3600")]).await;

    let a = register(&a_app, "redis").await;
    let s = login_ok(&a_app, &a.email, PASSWORD).await;
    assert_eq!(me_status(&b_app, &s.access).await, 200, "B accepts A's tokens");

    let res = post_json(&a_app, "/api/v1/auth/logout", json!({ "refreshToken": s.refresh })).await;
    assert_eq!(res.status(), 204);
    assert_eq!(me_status(&a_app, &s.access).await, 401, "A refuses at once");
    let status = poll_me_until(&b_app, &s.access, 401, Duration::from_secs(5)).await;
    assert_eq!(status, 401, "B must learn of the logout through Redis");
    // The session that was not logged out still works on both.
    assert_eq!(me_status(&b_app, &a.access).await, 200);
    assert_eq!(me_status(&a_app, &a.access).await, 200);
}

// ---------------------------------------------------------------------------------------------
// Brute-force protection
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn five_wrong_passwords_lock_that_account_only() {
    lockout_scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn five_wrong_passwords_lock_that_account_only_with_redis() {
    let redis = redis_url();
    let app =
        spawn_app_with(&[("REDIS_URL", redis.as_str()), ("AUTH_RATE_LIMIT_PER_MINUTE", "100000")], Router::new()).await;
    lockout_scenario(&app).await;
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count() {
    forgiveness_scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count_with_redis() {
    let redis = redis_url();
    let app =
        spawn_app_with(&[("REDIS_URL", redis.as_str()), ("AUTH_RATE_LIMIT_PER_MINUTE", "100000")], Router::new()).await;
    forgiveness_scenario(&app).await;
}

/// Four typos, then the right password: the slate is clean (single instance or many), so one
/// later typo does not lock a legitimate user out for the lockout period.
async fn forgiveness_scenario(app: &TestApp) {
    let a = register(app, "typo").await;
    for round in 0..3 {
        for i in 0..4 {
            let status = login(app, &a.email, "typo in the password").await.status();
            assert_eq!(status, 401, "round {round}, attempt {i}");
        }
        assert_eq!(login(app, &a.email, PASSWORD).await.status(), 200, "round {round}");
    }
}

async fn lockout_scenario(app: &TestApp) {
    let a = register(app, "victim").await;
    let b = register(app, "bystander").await;
    for i in 0..5 {
        let status = login(app, &a.email, "wrong password guess").await.status().as_u16();
        if i < 4 {
            assert_eq!(status, 401, "attempt {i}");
        } else {
            assert!(status == 401 || status == 429, "attempt {i}: {status}");
        }
    }
    // Locked: even the right password is refused, with a Retry-After.
    let res = login(app, &a.email, PASSWORD).await;
    let secs = retry_after(&res);
    assert!(secs <= 900, "{secs}");
    let body = assert_error(res, 429, "/api/v1/auth/login").await;
    assert!(!body["message"].as_str().unwrap().contains("password is"), "{body}");
    // However the email is spelled.
    assert_eq!(login(app, &format!(" {} ", a.email.to_uppercase()), PASSWORD).await.status(), 429);
    // Someone else signs in fine, and A's existing session is unaffected.
    login_ok(app, &b.email, PASSWORD).await;
    assert_eq!(me_status(app, &a.access).await, 200);
}

#[tokio::test]
async fn sign_in_routes_are_limited_per_ip() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "3")], Router::new()).await;
    for i in 0..3 {
        let res = login(&app, &format!("nobody{i}@example.com"), PASSWORD).await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    let res = login(&app, "nobody-else@example.com", PASSWORD).await;
    retry_after(&res);
    assert_error(res, 429, "/api/v1/auth/login").await;
    // The budget covers the other sign-in routes too.
    let res = post_json(
        &app,
        "/api/v1/auth/register",
        json!({ "email": unique_email("x"), "password": PASSWORD, "name": "X" }),
    )
    .await;
    retry_after(&res);
    assert_error(res, 429, "/api/v1/auth/register").await;
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 0);
    // Other routes are not limited.
    assert_eq!(app.get("/health/live").await.status(), 200);
    // X-Forwarded-For is not trusted by default: a made-up address does not buy a new budget.
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({ "email": "nobody@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(res, 429, "/api/v1/auth/login").await;
}

async fn login_via_proxy(app: &TestApp, forwarded_for: &str, email: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .header("user-agent", USER_AGENT)
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_it_saw_is_the_client() {
    let app =
        spawn_app_with(&[("TRUST_PROXY_HEADERS", "true"), ("AUTH_RATE_LIMIT_PER_MINUTE", "3")], Router::new()).await;
    // The proxy appends the address it saw; anything before it came from the client.
    for i in 0..3 {
        let res = login_via_proxy(&app, &format!("10.0.0.{i}, 203.0.113.7"), "nobody@example.com").await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    let res = login_via_proxy(&app, "10.9.9.9, 203.0.113.7", "nobody@example.com").await;
    assert_error(res, 429, "/api/v1/auth/login").await;
    // Another client behind the same proxy has its own budget, and is recorded as itself.
    let a = register(&app, "proxied").await;
    let res = login_via_proxy(&app, "6.6.6.6, 203.0.113.8", &a.email).await;
    let s = account_from(&json_of(res, 200).await, &a.email, PASSWORD);
    let sessions = json_of(get_authed(&app, "/api/v1/auth/sessions", &s.access).await, 200).await;
    let current = sessions["data"].as_array().unwrap().iter().find(|x| x["current"] == true).unwrap().clone();
    assert_eq!(current["ipAddress"], "203.0.113.8", "{current}");
    let rows = audit_rows(&app, "auth.login").await;
    assert_eq!(rows.last().unwrap().ip_address.as_deref(), Some("203.0.113.8"));
}

// ---------------------------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_in_events_are_audited() {
    let app = spawn_app().await;
    let a = register(&app, "audit").await;

    let s = login_ok(&app, &a.email, PASSWORD).await;
    let rows = assert_audited(&app, "auth.login", a.id).await;
    assert!(rows.iter().any(|r| r.resource_id.as_deref() == Some(sid(&s.access).as_str())), "{rows:?}");

    assert_eq!(login(&app, &a.email, "a wrong password").await.status(), 401);
    let failed = assert_audited(&app, "auth.login_failed", a.id).await;
    assert_eq!(failed.len(), 1);
    // An unknown email is recorded too, without a user.
    assert_eq!(login(&app, "ghost@example.com", "a wrong password").await.status(), 401);
    let all_failed = audit_rows(&app, "auth.login_failed").await;
    assert_eq!(all_failed.len(), 2);
    assert!(all_failed.iter().any(|r| r.user_id.is_none() && r.ip_address.as_deref() == Some(LOCALHOST)));

    assert_eq!(post_json(&app, "/api/v1/auth/logout", json!({ "refreshToken": s.refresh })).await.status(), 204);
    let rows = assert_audited(&app, "auth.logout", a.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resource_id.as_deref(), Some(sid(&s.access).as_str()));

    let r = json_of(refresh(&app, &a.refresh).await, 200).await;
    assert!(r["refreshToken"].is_string());
    assert_eq!(refresh(&app, &a.refresh).await.status(), 401);
    let rows = assert_audited(&app, "auth.refresh_reuse", a.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resource_id.as_deref(), Some(sid(&a.access).as_str()));
}

// ---------------------------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_make_one_account() {
    let app = spawn_app().await;
    let email = unique_email("race");
    let attempts = (0..6).map(|i| {
        post_json(
            &app,
            "/api/v1/auth/register",
            json!({ "email": email, "password": PASSWORD, "name": format!("R{i}") }),
        )
    });
    let statuses: Vec<u16> =
        futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    let n = user::Entity::find().filter(user::Column::Email.eq(email.as_str())).count(&app.state.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refresh_token_used_concurrently_never_forks_the_session() {
    let app = spawn_app().await;
    let a = register(&app, "fork").await;
    let attempts = (0..5).map(|_| refresh(&app, &a.refresh));
    let responses = futures_util::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for res in responses {
        match res.status().as_u16() {
            200 => winners.push(res.json::<Value>().await.unwrap()),
            401 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(winners.len() <= 1, "two live chains from one token: {winners:?}");
    // The losers were reuse: the session is over, whoever won.
    for w in &winners {
        assert_eq!(refresh(&app, w["refreshToken"].as_str().unwrap()).await.status(), 401);
        assert_eq!(me_status(&app, w["accessToken"].as_str().unwrap()).await, 401);
    }
    assert_eq!(me_status(&app, &a.access).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_from_one_new_device_all_succeed() {
    let app = spawn_app().await;
    let a = register(&app, "device-race").await;
    for round in 0..3 {
        let device = format!("phone-{round}");
        let attempts = (0..6).map(|_| {
            post_json(
                &app,
                "/api/v1/auth/login",
                json!({ "email": a.email, "password": PASSWORD, "deviceId": device, "deviceName": "Phone" }),
            )
        });
        let statuses: Vec<u16> =
            futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 200), "round {round}: {statuses:?}");
    }
    let n = mash::auth::entity::user_device::Entity::find()
        .filter(mash::auth::entity::user_device::Column::UserId.eq(a.id))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 3, "one row per device");
}

/// What `db::insert_together` promises the login's session write: rows that refer to each
/// other go in together (one statement on PostgreSQL), and when one of them fails none is
/// written.
#[tokio::test]
async fn rows_written_together_are_all_written_or_none() {
    use mash::{
        audit::Entry,
        auth::entity::{refresh_token, session},
    };
    use sea_orm::{ActiveValue::Set, QueryTrait};

    let app = spawn_app().await;
    let account = register(&app, "together").await;
    let db = &app.state.db;
    let now = chrono::Utc::now();
    let session_row = |id: Uuid| {
        session::Entity::insert(session::ActiveModel {
            id: Set(id),
            user_id: Set(account.id),
            user_device_id: Set(None),
            ip_address: Set(None),
            user_agent: Set(None),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(now + chrono::Duration::days(1)),
            revoked_at: Set(None),
            revoked_reason: Set(None),
        })
        .into_query()
    };
    let refresh_row = |session_id: Uuid| {
        refresh_token::Entity::insert(refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id),
            user_id: Set(account.id),
            token_hash: Set(Uuid::now_v7().simple().to_string()),
            created_at: Set(now),
            expires_at: Set(now + chrono::Duration::days(1)),
            used_at: Set(None),
        })
        .into_query()
    };
    let refresh_count = |session_id: Uuid| {
        refresh_token::Entity::find().filter(refresh_token::Column::SessionId.eq(session_id)).count(db)
    };

    // A refresh token that refers to the session written in the same call: its foreign key holds.
    let first = Uuid::now_v7();
    let (audit_id, audit_row) = mash::audit::insert(Entry::new("test.together").by(Some(account.id)));
    db.insert_together(vec![session_row(first), refresh_row(first), audit_row.clone()])
        .await
        .expect("rows that refer to each other go in together");
    assert!(session::Entity::find_by_id(first).one(db).await.unwrap().is_some());
    assert_eq!(refresh_count(first).await.unwrap(), 1);
    assert!(audit_log::Entity::find_by_id(audit_id).one(db).await.unwrap().is_some());

    // The last row fails (its audit id is taken now): the session and token before it are not written.
    let second = Uuid::now_v7();
    let failed = db.insert_together(vec![session_row(second), refresh_row(second), audit_row]).await;
    assert!(failed.is_err(), "a duplicate primary key fails the whole write");
    assert!(session::Entity::find_by_id(second).one(db).await.unwrap().is_none(), "no session without its siblings");
    assert_eq!(refresh_count(second).await.unwrap(), 0);

    // A refresh token for a session that exists nowhere fails, and takes the session beside it along.
    let third = Uuid::now_v7();
    let failed = db.insert_together(vec![session_row(third), refresh_row(Uuid::now_v7())]).await;
    assert!(failed.is_err(), "the foreign key is still checked");
    assert!(session::Entity::find_by_id(third).one(db).await.unwrap().is_none());
}
