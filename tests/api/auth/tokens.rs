//! Access tokens (tampered, forged, expired) and the JWKS that verifies them, and revocation
//! that survives a restart and reaches another instance over Redis.

use std::time::Duration;

use axum::Router;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

use crate::helpers::{
    TestApp,
    accounts::{
        PASSWORD, authed, get_authed, json_of, jwt_part, login_ok, me_status, post_json, refresh, register, sid,
    },
    assert_error, spawn_app, spawn_app_with, two_instances_on_redis,
};

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
