//! CONTRACT.md "Auth and users", MFA: TOTP enrollment and activation, the two-step login,
//! replay refusal, single-use backup codes and mfaTokens, disabling, and the audit rows.
//!
//! TOTP codes are computed here from RFC 6238 (HMAC-SHA1, 6 digits, 30 s steps), independently
//! of the server's implementation.

use std::time::Duration;

use axum::Router;
use hmac13::{Hmac, KeyInit, Mac};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::helpers::{
    TestApp,
    accounts::{
        Account, LOCALHOST, PASSWORD, USER_AGENT, assert_audited, assert_no_secrets, assert_user_clean, authed,
        get_authed, json_of, login, me_status, post_json, register,
    },
    assert_error, spawn_app, spawn_app_with,
};

const STEP: u64 = 30;

/// RFC 4226 HOTP truncated to 6 digits, at the RFC 6238 counter of `unix`.
fn totp_at(secret: &[u8], unix: u64) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(&(unix / STEP).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    format!("{:06}", bin % 1_000_000)
}

#[test]
fn the_test_totp_matches_rfc_6238_vectors() {
    // RFC 6238 appendix B, SHA-1 seed; the 8-digit values' last six digits.
    let seed = b"12345678901234567890";
    assert_eq!(totp_at(seed, 59), "287082");
    assert_eq!(totp_at(seed, 1_111_111_109), "081804");
    assert_eq!(totp_at(seed, 1_234_567_890), "005924");
    assert_eq!(totp_at(seed, 2_000_000_000), "279037");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Now, but never within a second of a step boundary (so the server sees the same step).
async fn steady_now() -> u64 {
    let now = unix_now();
    if now % STEP >= STEP - 1 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    unix_now()
}

struct Enrolled {
    secret: Vec<u8>,
    backup_codes: Vec<String>,
    /// The code that activated MFA.
    activation_code: String,
}

async fn enroll(app: &TestApp, who: &Account) -> (Vec<u8>, Value) {
    let res = authed(app, reqwest::Method::POST, "/api/v1/auth/mfa/totp/enroll", &who.access).send().await.unwrap();
    let body = json_of(res, 200).await;
    let secret_b32 = body["secret"].as_str().expect("secret");
    let secret =
        data_encoding::BASE32_NOPAD.decode(secret_b32.trim_end_matches('=').as_bytes()).expect("the secret is base32");
    assert!(secret.len() >= 16, "at least 128 bits");
    (secret, body)
}

async fn post_code(app: &TestApp, path: &str, who: &Account, code: &str) -> reqwest::Response {
    authed(app, reqwest::Method::POST, path, &who.access).json(&json!({ "code": code })).send().await.unwrap()
}

/// Enrolls and activates with the code of the *previous* step, so the current and the next
/// step stay fresh for the rest of the test.
async fn enable_mfa(app: &TestApp, who: &Account) -> Enrolled {
    let (secret, _) = enroll(app, who).await;
    let code = totp_at(&secret, steady_now().await - STEP);
    let res = post_code(app, "/api/v1/auth/mfa/totp/activate", who, &code).await;
    let body = json_of(res, 200).await;
    let backup_codes: Vec<String> =
        body["backupCodes"].as_array().expect("backupCodes").iter().map(|c| c.as_str().unwrap().to_string()).collect();
    Enrolled { secret, backup_codes, activation_code: code }
}

/// Password step of a login when MFA is on: the mfaToken.
async fn mfa_token(app: &TestApp, who: &Account) -> String {
    let body = json_of(login(app, &who.email, PASSWORD).await, 200).await;
    assert_eq!(body["mfaRequired"], true, "{body}");
    assert!(body.get("accessToken").is_none() && body.get("refreshToken").is_none(), "no tokens yet: {body}");
    assert!(body.get("user").is_none(), "{body}");
    body["mfaToken"].as_str().expect("mfaToken").to_string()
}

async fn verify(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    post_json(app, "/api/v1/auth/mfa/verify", json!({ "mfaToken": token, "code": code })).await
}

#[tokio::test]
async fn totp_enrollment_two_step_login_replay_and_disable() {
    let app = spawn_app().await;
    let a = register(&app, "mfa").await;
    // Nothing to activate or disable before enrolling.
    let res = post_code(&app, "/api/v1/auth/mfa/totp/activate", &a, "123456").await;
    assert_error(res, 409, "/api/v1/auth/mfa/totp/activate").await;
    let res = post_code(&app, "/api/v1/auth/mfa/totp/disable", &a, "123456").await;
    assert_error(res, 409, "/api/v1/auth/mfa/totp/disable").await;

    // Enroll: a base32 secret and an otpauth URL for it.
    let (secret, body) = enroll(&app, &a).await;
    let url = body["otpauthUrl"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/"), "{url}");
    assert!(url.contains(&format!("secret={}", body["secret"].as_str().unwrap())), "{url}");
    assert!(url.contains("issuer=Mash"), "{url}");
    // Enrolling alone changes nothing for sign-in.
    let plain = json_of(login(&app, &a.email, PASSWORD).await, 200).await;
    assert!(plain["accessToken"].is_string());

    // A wrong code does not activate.
    let now = steady_now().await;
    let valid: Vec<String> = [now - STEP, now, now + STEP].iter().map(|t| totp_at(&secret, *t)).collect();
    let wrong = (0..1_000_000).map(|n| format!("{n:06}")).find(|c| !valid.contains(c)).unwrap();
    let res = post_code(&app, "/api/v1/auth/mfa/totp/activate", &a, &wrong).await;
    let body = assert_error(res, 400, "/api/v1/auth/mfa/totp/activate").await;
    assert_eq!(body["details"][0]["field"], "code", "{body}");
    let me = json_of(get_authed(&app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["mfaEnabled"], false);

    // The right code activates and gives ten distinct backup codes.
    let code = totp_at(&secret, steady_now().await - STEP);
    let res = post_code(&app, "/api/v1/auth/mfa/totp/activate", &a, &code).await;
    let body = json_of(res, 200).await;
    let codes = body["backupCodes"].as_array().expect("backupCodes");
    assert_eq!(codes.len(), 10, "{body}");
    let mut unique: Vec<&str> = codes.iter().map(|c| c.as_str().unwrap()).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    let me = json_of(get_authed(&app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["mfaEnabled"], true);
    assert_user_clean(&me, PASSWORD);
    // Activating again is a conflict.
    let res = post_code(&app, "/api/v1/auth/mfa/totp/activate", &a, &totp_at(&secret, unix_now())).await;
    assert_error(res, 409, "/api/v1/auth/mfa/totp/activate").await;
    // The activation code was spent: it cannot sign in.
    let token = mfa_token(&app, &a).await;
    assert_error(verify(&app, &token, &code).await, 401, "/api/v1/auth/mfa/verify").await;

    // Password + current code: signed in.
    let token = mfa_token(&app, &a).await;
    let current = totp_at(&secret, steady_now().await);
    let body = json_of(verify(&app, &token, &current).await, 200).await;
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["user"]["id"], a.id.to_string());
    assert_eq!(body["user"]["mfaEnabled"], true);
    assert_user_clean(&body["user"], PASSWORD);
    assert_no_secrets(&body, PASSWORD);
    let signed_in = body["accessToken"].as_str().unwrap().to_string();
    assert_eq!(me_status(&app, &signed_in).await, 200);

    // The mfaToken was single use.
    let next = totp_at(&secret, unix_now() + STEP);
    assert_error(verify(&app, &token, &next).await, 401, "/api/v1/auth/mfa/verify").await;

    // The same code again, with a fresh mfaToken: a replay, refused.
    let token = mfa_token(&app, &a).await;
    let body = assert_error(verify(&app, &token, &current).await, 401, "/api/v1/auth/mfa/verify").await;
    assert!(body.get("accessToken").is_none());
    // An mfaToken past its five minutes is refused, even with a good code.
    let stale = mfa_token(&app, &a).await;
    mash::auth::entity::mfa_challenge::Entity::update_many()
        .col_expr(
            mash::auth::entity::mfa_challenge::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(mash::auth::entity::mfa_challenge::Column::TokenHash.eq(mash::auth::secrets::token_hash(&stale)))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_error(verify(&app, &stale, &next).await, 401, "/api/v1/auth/mfa/verify").await;
    // Garbage mfaToken; an empty one is a 400 naming it.
    assert_error(verify(&app, "not-a-token", &next).await, 401, "/api/v1/auth/mfa/verify").await;
    let body = assert_error(verify(&app, "", &next).await, 400, "/api/v1/auth/mfa/verify").await;
    assert_eq!(body["details"][0]["field"], "mfaToken", "{body}");

    // Disable needs a valid code: a wrong one is 400, and MFA stays on.
    let res = post_code(&app, "/api/v1/auth/mfa/totp/disable", &a, &wrong).await;
    let body = assert_error(res, 400, "/api/v1/auth/mfa/totp/disable").await;
    assert_eq!(body["details"][0]["field"], "code");
    let res = post_code(&app, "/api/v1/auth/mfa/totp/disable", &a, &next).await;
    assert_eq!(res.status(), 204);
    let me = json_of(get_authed(&app, "/api/v1/users/me", &a.access).await, 200).await;
    assert_eq!(me["mfaEnabled"], false);
    // Password alone signs in again.
    let body = json_of(login(&app, &a.email, PASSWORD).await, 200).await;
    assert!(body["accessToken"].is_string(), "{body}");
    assert!(body.get("mfaRequired").is_none_or(|v| v == false));
    // Disabling again is a conflict; the old secret is gone.
    let res = post_code(&app, "/api/v1/auth/mfa/totp/disable", &a, &totp_at(&secret, unix_now() + 2 * STEP)).await;
    assert_error(res, 409, "/api/v1/auth/mfa/totp/disable").await;

    // Routes need a signed-in user.
    let res = app.client.post(app.url("/api/v1/auth/mfa/totp/enroll")).send().await.unwrap();
    assert_error(res, 401, "/api/v1/auth/mfa/totp/enroll").await;
}

#[tokio::test]
async fn backup_codes_work_once_and_an_mfa_token_once() {
    let app = spawn_app().await;
    let a = register(&app, "backup").await;
    let enrolled = enable_mfa(&app, &a).await;
    assert_eq!(enrolled.backup_codes.len(), 10);

    let first = &enrolled.backup_codes[0];
    let token = mfa_token(&app, &a).await;
    let body = json_of(verify(&app, &token, first).await, 200).await;
    assert_eq!(me_status(&app, body["accessToken"].as_str().unwrap()).await, 200);
    assert_user_clean(&body["user"], PASSWORD);

    // The same backup code again: refused.
    let token = mfa_token(&app, &a).await;
    assert_error(verify(&app, &token, first).await, 401, "/api/v1/auth/mfa/verify").await;
    // That mfaToken was not used up by the failure: another backup code completes it.
    let second = &enrolled.backup_codes[1];
    let body = json_of(verify(&app, &token, second).await, 200).await;
    assert!(body["refreshToken"].is_string());
    // The completed mfaToken cannot be used again, even with a valid unused backup code...
    let third = &enrolled.backup_codes[2];
    assert_error(verify(&app, &token, third).await, 401, "/api/v1/auth/mfa/verify").await;
    // ...and that attempt did not burn the backup code.
    let token = mfa_token(&app, &a).await;
    json_of(verify(&app, &token, &third.to_uppercase()).await, 200).await;

    // A backup code can also turn MFA off.
    let res = post_code(&app, "/api/v1/auth/mfa/totp/disable", &a, &enrolled.backup_codes[3]).await;
    assert_eq!(res.status(), 204);
    // After disabling, the remaining backup codes are gone with it.
    let enrolled_again = enable_mfa(&app, &a).await;
    let token = mfa_token(&app, &a).await;
    assert_error(verify(&app, &token, &enrolled.backup_codes[4]).await, 401, "/api/v1/auth/mfa/verify").await;
    json_of(verify(&app, &token, &enrolled_again.backup_codes[0]).await, 200).await;
    assert_ne!(enrolled_again.secret, enrolled.secret, "a new secret");
    assert!(!enrolled.activation_code.is_empty());
}

#[tokio::test]
async fn mfa_changes_are_audited() {
    let app = spawn_app().await;
    let a = register(&app, "mfa-audit").await;
    let enrolled = enable_mfa(&app, &a).await;
    let rows = assert_audited(&app, "mfa.enabled", a.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].resource_id.as_deref(), Some(a.id.to_string().as_str()));

    // A bad code at the second step is a failed login.
    let token = mfa_token(&app, &a).await;
    assert_eq!(verify(&app, &token, "zzzzz-zzzzz").await.status(), 401);
    let failed = assert_audited(&app, "auth.login_failed", a.id).await;
    assert_eq!(failed.len(), 1);
    // A completed one is a login.
    json_of(verify(&app, &token, &enrolled.backup_codes[0]).await, 200).await;
    let logins = assert_audited(&app, "auth.login", a.id).await;
    assert!(logins.iter().any(|r| r.details.as_ref().is_some_and(|d| d["method"] == "password+mfa")), "{logins:?}");

    let code = totp_at(&enrolled.secret, steady_now().await + STEP);
    assert_eq!(post_code(&app, "/api/v1/auth/mfa/totp/disable", &a, &code).await.status(), 204);
    let rows = assert_audited(&app, "mfa.disabled", a.id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    assert_eq!(rows[0].user_agent.as_deref(), Some(USER_AGENT));
}

/// Wrong codes at the second step count towards the account lockout, and a correct password
/// at the first step must not wipe that count (or the six digits could be guessed forever,
/// a few at a time, by logging in again between guesses).
async fn wrong_codes_lock_the_account_across_fresh_logins(app: &TestApp) {
    let a = register(app, "mfa-guess").await;
    let enrolled = enable_mfa(app, &a).await;
    let wrong = "zzzzz-zzzzz";
    let token = mfa_token(app, &a).await;
    for _ in 0..3 {
        assert_eq!(verify(app, &token, wrong).await.status(), 401);
    }
    let token = mfa_token(app, &a).await;
    assert_eq!(verify(app, &token, wrong).await.status(), 401);
    let fifth = verify(app, &token, wrong).await.status().as_u16();
    assert!(fifth == 401 || fifth == 429, "{fifth}");
    // Five failures: locked, whatever comes next.
    let res = login(app, &a.email, PASSWORD).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, 429, "/api/v1/auth/login").await;
    if fifth == 401 {
        let res = verify(app, &token, &enrolled.backup_codes[0]).await;
        assert_error(res, 429, "/api/v1/auth/mfa/verify").await;
    }
}

#[tokio::test]
async fn wrong_mfa_codes_lock_the_account() {
    let app = spawn_app().await;
    wrong_codes_lock_the_account_across_fresh_logins(&app).await;
}

#[tokio::test]
async fn wrong_mfa_codes_lock_the_account_with_redis() {
    let redis = std::env::var("MASH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let app =
        spawn_app_with(&[("REDIS_URL", redis.as_str()), ("AUTH_RATE_LIMIT_PER_MINUTE", "100000")], Router::new()).await;
    wrong_codes_lock_the_account_across_fresh_logins(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_second_steps_sign_in_once() {
    let app = spawn_app().await;
    let a = register(&app, "mfa-race").await;
    let enrolled = enable_mfa(&app, &a).await;

    // One mfaToken, two different valid backup codes at once: one session, not two.
    let token = mfa_token(&app, &a).await;
    let (r1, r2) =
        tokio::join!(verify(&app, &token, &enrolled.backup_codes[0]), verify(&app, &token, &enrolled.backup_codes[1]));
    let mut statuses = [r1.status().as_u16(), r2.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
    // The losing attempt did not spend its backup code.
    let ok = if r1.status() == 200 { 1 } else { 0 };
    let token = mfa_token(&app, &a).await;
    json_of(verify(&app, &token, &enrolled.backup_codes[ok]).await, 200).await;

    // One TOTP code, two mfaTokens at once: accepted once.
    let (t1, t2) = (mfa_token(&app, &a).await, mfa_token(&app, &a).await);
    let code = totp_at(&enrolled.secret, steady_now().await);
    let (r1, r2) = tokio::join!(verify(&app, &t1, &code), verify(&app, &t2, &code));
    let mut statuses = [r1.status().as_u16(), r2.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
}
