//! Accounts as the tests use them: sign-up and sign-in through the API, roles set in the
//! database, authenticated requests, JWT and secret checks, and audit rows.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mash::{audit::entity as audit_log, users::entity::user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";

pub const USER_AGENT: &str = "MashTests/1.0 (integration)";

pub const LOCALHOST: &str = "127.0.0.1";

/// A signed-in account as the tests use it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", Uuid::now_v7().simple())
}

pub async fn post_json(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).header("user-agent", USER_AGENT).json(&body).send().await.expect("request failed")
}

/// A request with the bearer token and the test user agent.
pub fn authed(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token).header("user-agent", USER_AGENT)
}

pub async fn get_authed(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    authed(app, reqwest::Method::GET, path, token).send().await.expect("request failed")
}

/// A request as a person (`Bearer`), with a JSON body when given.
pub async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = authed(app, method, path, token);
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.expect("request failed")
}

pub async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    send(app, method, path, token, Some(&body)).await
}

/// Status of `GET /users/me` with this access token.
pub async fn me_status(app: &TestApp, token: &str) -> u16 {
    get_authed(app, "/api/v1/users/me", token).await.status().as_u16()
}

pub async fn json_of(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "unexpected status; body: {body}");
    body
}

pub fn account_from(body: &Value, email: &str, password: &str) -> Account {
    Account {
        id: body["user"]["id"].as_str().expect("user.id").parse().expect("user.id is a UUID"),
        email: email.to_string(),
        password: password.to_string(),
        access: body["accessToken"].as_str().expect("accessToken").to_string(),
        refresh: body["refreshToken"].as_str().expect("refreshToken").to_string(),
    }
}

/// Registers a fresh CUSTOMER (201 asserted).
pub async fn register(app: &TestApp, prefix: &str) -> Account {
    register_named(app, prefix, &format!("{prefix} Tester")).await
}

pub async fn register_named(app: &TestApp, prefix: &str, name: &str) -> Account {
    let email = unique_email(prefix);
    let body = register_with(app, &email, PASSWORD, name).await;
    account_from(&body, &email, PASSWORD)
}

/// `POST /auth/register` with exactly these fields (201 asserted); the answer.
pub async fn register_with(app: &TestApp, email: &str, password: &str, name: &str) -> Value {
    let res =
        post_json(app, "/api/v1/auth/register", json!({ "email": email, "password": password, "name": name })).await;
    json_of(res, 201).await
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post_json(app, "/api/v1/auth/login", json!({ "email": email, "password": password })).await
}

/// Logs in again (a new session, 200 asserted).
pub async fn login_ok(app: &TestApp, email: &str, password: &str) -> Account {
    let body = json_of(login(app, email, password).await, 200).await;
    account_from(&body, email, password)
}

/// `POST /auth/refresh` with this refresh token.
pub async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    post_json(app, "/api/v1/auth/refresh", json!({ "refreshToken": token })).await
}

/// Refreshes `who`'s session (200 asserted): its new access and refresh tokens.
pub async fn refresh_ok(app: &TestApp, who: &Account) -> Account {
    let body = json_of(refresh(app, &who.refresh).await, 200).await;
    Account {
        access: body["accessToken"].as_str().unwrap().to_string(),
        refresh: body["refreshToken"].as_str().unwrap().to_string(),
        ..who.clone()
    }
}

/// The session id (`sid` claim) of an access token.
pub fn sid(token: &str) -> String {
    jwt_part(token, 1)["sid"].as_str().expect("sid claim").to_string()
}

/// Sets a user's role directly in the database (as `mash seed` or an operator would).
pub async fn set_role(app: &TestApp, id: Uuid, role: &str) {
    let res = user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(role))
        .filter(user::Column::Id.eq(id))
        .exec(&app.state.db)
        .await
        .expect("update role");
    assert_eq!(res.rows_affected, 1);
}

/// A user of `role` with a token carrying it.
pub async fn user_with_role(app: &TestApp, prefix: &str, role: &str) -> Account {
    let a = register(app, prefix).await;
    set_role(app, a.id, role).await;
    let fresh = login_ok(app, &a.email, &a.password).await;
    assert_eq!(jwt_part(&fresh.access, 1)["role"], role);
    fresh
}

pub async fn admin(app: &TestApp) -> Account {
    user_with_role(app, "admin", "ADMIN").await
}

/// Decodes one segment (0 = header, 1 = payload) of a JWT.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let seg = token.split('.').nth(index).expect("JWT segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).expect("base64url segment")).expect("JSON segment")
}

/// No user JSON may carry a hash, a TOTP secret or the password itself.
pub fn assert_no_secrets(body: &Value, password: &str) {
    fn walk(v: &Value, password: &str, whole: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = k.to_ascii_lowercase();
                    assert!(!key.contains("passwordhash") && !key.contains("password_hash"), "key {k} in {whole}");
                    assert!(!key.contains("totp"), "key {k} in {whole}");
                    assert!(
                        key != "secret" && !key.ends_with("secret") && !key.contains("secret_"),
                        "key {k} in {whole}"
                    );
                    assert_ne!(key, "password", "key {k} in {whole}");
                    walk(v, password, whole);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, password, whole)),
            Value::String(s) => {
                assert!(!s.contains(password), "the password appears in {whole}");
                assert!(!s.contains("$argon2"), "a hash appears in {whole}");
            }
            _ => {}
        }
    }
    walk(body, password, body);
    let text = body.to_string();
    assert!(!text.contains("$argon2"), "{text}");
    assert!(!text.contains(password), "{text}");
    assert!(!text.contains("passwordHash") && !text.contains("password_hash"), "{text}");
}

/// The same checks, plus no "totp" anywhere in a user object itself.
pub fn assert_user_clean(user: &Value, password: &str) {
    assert!(user["id"].is_string() && user["email"].is_string(), "not a user: {user}");
    assert_no_secrets(user, password);
    let text = user.to_string().to_ascii_lowercase();
    assert!(!text.contains("totp") && !text.contains("\"secret\""), "{user}");
}

/// Audit rows with this action, oldest first.
pub async fn audit_rows(app: &TestApp, action: &str) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(action))
        .order_by_asc(audit_log::Column::CreatedAt)
        .order_by_asc(audit_log::Column::Id)
        .all(&app.state.db)
        .await
        .expect("audit query")
}

/// Exactly the rows of `action` by `user_id` (asserts at least one, and the client IP on each).
pub async fn assert_audited(app: &TestApp, action: &str, user_id: Uuid) -> Vec<audit_log::Model> {
    let rows: Vec<_> = audit_rows(app, action).await.into_iter().filter(|r| r.user_id == Some(user_id)).collect();
    assert!(!rows.is_empty(), "no {action} audit row for {user_id}");
    for r in &rows {
        assert_eq!(r.ip_address.as_deref(), Some(LOCALHOST), "{r:?}");
        assert_eq!(r.user_agent.as_deref(), Some(USER_AGENT), "{r:?}");
    }
    rows
}
