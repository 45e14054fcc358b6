//! Authentication of realtime connections (a query token, a first `auth` message, a Bearer
//! header for SSE) and its refusals; token expiry (events held until a new `auth`, or the
//! connection closed) and revocation of a session closing its connections only.

use chrono::Utc;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    accounts::{PASSWORD, authed, json_of, jwt_part, login_ok, refresh_ok, register, sid},
    assert_error,
    greenhouse::{create_device, greenhouse},
    quiet_app,
    rt_client::{SSE_PATH, SseAuth, SseClient, WAIT, WsClient, id_of, sse_request},
};

use super::{LONG_WAIT, assert_none_on, desired, micros, put_desired};

// ---------------------------------------------------------------------------------------------
// 1. Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_websocket_accepts_a_query_token_or_a_first_auth_message() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    // `?access_token=`: subscriptions work straight away.
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"]["deviceId"], dev.id.to_string(), "{snap}");

    // A first `auth` message: `auth_ok` with the user and when the token expires.
    let mut ws = WsClient::connect(&app, None).await;
    let ok = ws.auth(&g.owner.access).await;
    assert_eq!(ok["userId"], g.owner.id.to_string(), "{ok}");
    let expires = micros(&ok["expiresAt"]);
    assert!(expires > Utc::now().timestamp_micros(), "expiresAt in the future: {ok}");
    assert_eq!(expires / 1_000_000, jwt_part(&g.owner.access, 1)["exp"].as_i64().unwrap(), "the token's exp: {ok}");
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"]["desiredVersion"], 0, "{snap}");

    // Subscribing before authenticating is refused with an error, and gives no snapshot.
    let mut ws = WsClient::connect(&app, None).await.named("unauthenticated");
    ws.subscribe(&path).await;
    let err = ws.next_json(WAIT).await;
    assert_eq!(err["type"], "error", "subscribe before auth: {err}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{err}");
    let ok = ws.auth(&g.owner.access).await;
    assert_eq!(ok["userId"], g.owner.id.to_string());
    // The refused subscription was not made: only an explicit one gives a snapshot.
    assert_none_on(&ws.ping_round_trip().await, &path, "unauthenticated");
    ws.snapshot(&path).await;

    // An SSE stream takes the token as a query parameter or as a Bearer header.
    for auth in [SseAuth::Query(&g.owner.access), SseAuth::Bearer(&g.owner.access)] {
        let mut sse = SseClient::connect(app.addr, &[&path], auth, None).await;
        let (id, snap) = sse.next_on(&path, WAIT).await;
        assert_eq!(snap["type"], "snapshot", "{auth:?}: {snap}");
        assert_eq!(snap["data"]["deviceId"], dev.id.to_string());
        assert_eq!(id.as_deref(), Some(snap["id"].as_str().unwrap()), "one path: the cursor is its id");
    }
}

#[tokio::test]
async fn realtime_refuses_a_missing_late_or_bad_token() {
    let app = quiet_app(&[("REALTIME_AUTH_TIMEOUT_SECS", "1")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    // No token and no `auth` message within REALTIME_AUTH_TIMEOUT_SECS: 4001.
    let mut ws = WsClient::connect(&app, None).await.named("silent");
    let (code, _) = ws.expect_close(WAIT).await;
    assert_eq!(code, 4001, "no auth in time");

    // A bad token, in the query or in the `auth` message: 4001.
    // A token whose signature was changed (its first character, which carries six full bits).
    let mut parts: Vec<String> = g.owner.access.split('.').map(str::to_string).collect();
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2] = format!("{flipped}{}", &parts[2][1..]);
    let tampered = parts.join(".");
    for bad in ["not-a-token", tampered.as_str()] {
        let mut ws = WsClient::connect(&app, Some(bad)).await.named("bad query token");
        let (code, _) = ws.expect_close(WAIT).await;
        assert_eq!(code, 4001, "query token {bad:?}");
        let mut ws = WsClient::connect(&app, None).await.named("bad auth message");
        ws.send_json(json!({ "type": "auth", "token": bad })).await;
        let (msgs, (code, _)) = ws.messages_until_close(WAIT).await;
        assert_eq!(code, 4001, "auth message {bad:?}");
        assert!(msgs.iter().all(|m| m["type"] != "auth_ok"), "{msgs:?}");
    }

    // The token of a session that was logged out is no token.
    let gone = login_ok(&app, &g.owner.email, PASSWORD).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refreshToken": gone.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let mut ws = WsClient::connect(&app, Some(&gone.access)).await.named("logged out");
    let (msgs, (code, _)) = ws.messages_until_close(WAIT).await;
    assert_eq!(code, 4001, "a revoked session's token: {msgs:?}");

    // SSE: 401 with the error body before any stream.
    for auth in [SseAuth::None, SseAuth::Query("not-a-token"), SseAuth::Bearer(&tampered), SseAuth::Query(&gone.access)]
    {
        let res = sse_request(app.addr, &[&path], auth, None).await;
        assert_error(res, 401, SSE_PATH).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Token expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_websocket_token_expiry_holds_events_until_a_new_auth() {
    let app = quiet_app(&[("ACCESS_TOKEN_TTL_SECS", "2"), ("REALTIME_AUTH_GRACE_SECS", "60")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let session = login_ok(&app, &g.owner.email, PASSWORD).await;
    let mut ws = WsClient::authed(&app, &session.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 1 })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 1);

    let (skipped, expired) = ws.collect_until("auth_expired", LONG_WAIT, |v| v["type"] == "auth_expired").await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(expired["message"].as_str().is_some_and(|m| !m.is_empty()), "{expired}");

    // A change while expired is held, and delivered after a new `auth` for the same user.
    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 2 })).await;
    let renewed = refresh_ok(&app, &session).await;
    ws.send_json(json!({ "type": "auth", "token": renewed.access })).await;
    let (before, ok) = ws.collect_until("auth_ok", WAIT, |v| v["type"] == "auth_ok").await;
    assert!(before.iter().all(|m| m["type"] != "event"), "events are held while the token is expired: {before:?}");
    assert_eq!(ok["userId"], g.owner.id.to_string());
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2, "nothing lost: {ev}");
    assert_eq!(ev["data"]["desiredVersion"], 2);
    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 3 })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 3, "and it goes on");
}

#[tokio::test]
async fn realtime_websocket_without_a_new_auth_after_expiry_is_closed_4001() {
    let app = quiet_app(&[("ACCESS_TOKEN_TTL_SECS", "2"), ("REALTIME_AUTH_GRACE_SECS", "1")]).await;
    let user = register(&app, "expiring").await;
    let mut ws = WsClient::authed(&app, &user.access).await;
    let expired = ws.next_of_type("auth_expired", LONG_WAIT).await;
    assert!(expired["message"].as_str().is_some_and(|m| !m.is_empty()), "{expired}");
    let (code, _) = ws.expect_close(WAIT).await;
    assert_eq!(code, 4001, "no new auth within the grace period");
}

#[tokio::test]
async fn realtime_sse_stream_ends_on_token_expiry_and_resumes_with_a_fresh_token() {
    let app = quiet_app(&[("ACCESS_TOKEN_TTL_SECS", "2")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let session = login_ok(&app, &g.owner.email, PASSWORD).await;
    let mut sse = SseClient::authed(&app, &[&path], &session.access).await;
    let (cursor, snap) = sse.next_on(&path, WAIT).await;
    assert_eq!(snap["type"], "snapshot");
    let s = id_of(&snap);
    let (_, expired) = sse.next_of_type("auth_expired", LONG_WAIT).await;
    assert!(expired["message"].is_string(), "{expired}");
    assert!(sse.ended(WAIT).await, "the stream ends after auth_expired");
    assert!(sse.skipped.is_empty(), "nothing after auth_expired: {:?}", sse.skipped);

    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 1 })).await;
    let fresh = refresh_ok(&app, &session).await;
    let mut sse = SseClient::connect(app.addr, &[&path], SseAuth::Bearer(&fresh.access), cursor.as_deref()).await;
    let (_, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 1), "missed nothing: {ev}");
}

// ---------------------------------------------------------------------------------------------
// 10. Revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_revoking_a_session_closes_its_connections_only() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);
    let email = g.owner.email.clone();
    let s1 = login_ok(&app, &email, PASSWORD).await;
    let s2 = login_ok(&app, &email, PASSWORD).await;
    let s3 = login_ok(&app, &email, PASSWORD).await;
    let s4 = login_ok(&app, &email, PASSWORD).await;

    let mut ws1 = WsClient::authed(&app, &s1.access).await.named("session 1");
    ws1.snapshot(&path).await;
    let mut sse1 = SseClient::authed(&app, &[&path], &s1.access).await;
    sse1.next_on(&path, WAIT).await;
    let mut ws2 = WsClient::authed(&app, &s2.access).await.named("session 2");
    ws2.snapshot(&path).await;

    // Logout of session 1: its socket is closed 4003, its stream ends with `revoked`.
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refreshToken": s1.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (code, _) = ws1.expect_close(WAIT).await;
    assert_eq!(code, 4003, "logout closes the session's socket");
    let (_, err) = sse1.next_of_type("error", WAIT).await;
    assert_eq!(err["code"], "revoked", "{err}");
    assert!(sse1.ended(WAIT).await, "the stream ends");

    // Session 2 lives on.
    put_desired(&app, &g.owner, dev.id, json!({ "v": 1 })).await;
    assert_eq!(ws2.expect_event(&path).await["data"]["desiredVersion"], 1);

    // Deleting session 2 (from session 3) closes it.
    let res = authed(&app, Method::DELETE, &format!("/api/v1/auth/sessions/{}", sid(&s2.access)), &s3.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (code, _) = ws2.expect_close(WAIT).await;
    assert_eq!(code, 4003, "a deleted session's socket is closed");

    // A password change (from session 3) ends every other session: session 4's socket closes,
    // session 3's stays.
    let mut ws3 = WsClient::authed(&app, &s3.access).await.named("session 3");
    ws3.snapshot(&path).await;
    let mut ws4 = WsClient::authed(&app, &s4.access).await.named("session 4");
    ws4.snapshot(&path).await;
    let res = authed(&app, Method::POST, "/api/v1/users/me/password", &s3.access)
        .json(&json!({ "currentPassword": PASSWORD, "newPassword": "a brand new passphrase 42" }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "password change: {}", res.status());
    let (code, _) = ws4.expect_close(WAIT).await;
    assert_eq!(code, 4003);
    put_desired(&app, &g.admin, dev.id, json!({ "v": 2 })).await;
    assert_eq!(ws3.expect_event(&path).await["data"]["desiredVersion"], 2, "the changing session stays");

    // An admin disabling the user closes the rest.
    let res = authed(&app, Method::PATCH, &format!("/api/v1/users/{}", g.owner.id), &g.admin.access)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 200).await["disabled"], true);
    let (code, _) = ws3.expect_close(WAIT).await;
    assert_eq!(code, 4003, "a disabled user's socket is closed");
}
