//! Register (normalized emails, one account per email, the password policy, no chosen role)
//! and login (tokens, one 401 for any wrong credentials, malformed input as 400).

use mash::users::entity::user;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{
        PASSWORD, account_from, assert_no_secrets, assert_user_clean, audit_rows, get_authed, json_of, jwt_part, login,
        login_ok, me_status, post_json, register, unique_email,
    },
    assert_error, spawn_app,
};

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
