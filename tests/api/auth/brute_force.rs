//! Brute-force protection: the per-account lockout (with and without Redis), forgiveness after
//! a successful login, the per-IP limit on sign-in routes, and client addresses behind a
//! trusted proxy.

use axum::Router;
use mash::users::entity::user;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use crate::helpers::{
    TestApp,
    accounts::{
        PASSWORD, USER_AGENT, account_from, audit_rows, get_authed, json_of, login, login_ok, me_status, post_json,
        register, unique_email,
    },
    assert_error, redis_url, spawn_app, spawn_app_with,
};

fn retry_after(res: &reqwest::Response) -> u64 {
    let v = res.headers().get("retry-after").expect("Retry-After header").to_str().unwrap();
    let secs: u64 = v.parse().expect("Retry-After in seconds");
    assert!(secs >= 1, "{secs}");
    secs
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
