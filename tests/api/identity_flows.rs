//! Email verification and password reset through the real outbox and a fake SMTP server,
//! sign-in with an external OIDC identity against a local JWKS server, and `mash seed`.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::mpsc,
};

use crate::helpers::{TestApp, accounts::register_with, assert_error, spawn_app_with};

const PASSWORD: &str = "a sturdy passphrase 42";

/// A minimal SMTP server that accepts every message and hands over its DATA section.
async fn fake_smtp() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake-smtp ready\r\n").await.ok();
                let mut in_data = false;
                let mut data = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            tx.send(std::mem::take(&mut data)).ok();
                            write.write_all(b"250 2.0.0 queued\r\n").await.ok();
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250-fake-smtp\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok();
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.ok();
                }
            });
        }
    });
    (addr, rx)
}

/// Undoes quoted-printable soft breaks and `=XX` escapes (lettre may encode long lines).
fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits (bounded) for the next mail to `to` and returns its decoded text.
async fn next_mail(rx: &mut mpsc::UnboundedReceiver<String>, to: &str) -> String {
    loop {
        let raw = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("no mail arrived at the fake SMTP server")
            .expect("smtp channel open");
        let text = decode_qp(&raw);
        if text.contains(to) {
            return text;
        }
    }
}

fn token_from(mail: &str, path: &str) -> String {
    let marker = format!("{path}?token=");
    let start = mail.find(&marker).unwrap_or_else(|| panic!("no {path} link in: {mail}")) + marker.len();
    mail[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

#[tokio::test]
async fn email_verification_and_password_reset_go_through_smtp() {
    let (smtp, mut inbox) = fake_smtp().await;
    let smtp_url = format!("smtp://{smtp}");
    let app = spawn_app_with(
        &[("SMTP_URL", &smtp_url), ("PUBLIC_URL", "https://app.example"), ("MAIL_FROM", "Mash <mail@mash.test>")],
        Router::new(),
    )
    .await;

    // Registration sends a verification link.
    let reg = register_with(&app, "flow@example.com", PASSWORD, "Flow Tester").await;
    assert_eq!(reg["user"]["emailVerified"], false);
    let mail = next_mail(&mut inbox, "flow@example.com").await;
    assert!(mail.contains("From: Mash <mail@mash.test>"), "{mail}");
    assert!(mail.contains("https://app.example/verify-email?token="), "{mail}");
    let token = token_from(&mail, "/verify-email");
    let verify = |t: String| {
        let app = &app;
        async move { app.client.post(app.url("/api/v1/auth/email/verify")).json(&json!({"token": t})).send().await.unwrap() }
    };
    assert_eq!(verify(token.clone()).await.status(), 204);
    let me: Value = app
        .client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(reg["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["emailVerified"], true);
    // Single use.
    let body = assert_error(verify(token).await, 400, "/api/v1/auth/email/verify").await;
    assert_eq!(body["details"][0]["field"], "token");

    // Forgot: 202 for an unknown address too, and nothing is sent for it.
    let forgot = |email: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/password/forgot"))
                .json(&json!({"email": email}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(forgot("nobody@example.com").await.status(), 202);
    assert_eq!(forgot("FLOW@example.com").await.status(), 202);
    let mail = next_mail(&mut inbox, "flow@example.com").await;
    assert!(!mail.contains("nobody@example.com"));
    let reset_token = token_from(&mail, "/reset-password");

    // A weak password is refused without using up the token.
    let res = app
        .client
        .post(app.url("/api/v1/auth/password/reset"))
        .json(&json!({"token": reset_token, "newPassword": "password123"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "/api/v1/auth/password/reset").await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/password/reset"))
        .json(&json!({"token": reset_token, "newPassword": "an entirely new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    // Every session ended; the old password is gone, the new one works.
    let res = app
        .client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(reg["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "/api/v1/users/me").await;
    let login = |pw: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"email": "flow@example.com", "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(login(PASSWORD).await.status(), 401);
    assert_eq!(login("an entirely new passphrase").await.status(), 200);
    // The reset token was single use.
    let res = app
        .client
        .post(app.url("/api/v1/auth/password/reset"))
        .json(&json!({"token": reset_token, "newPassword": "yet another passphrase"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "/api/v1/auth/password/reset").await;
}

#[tokio::test]
async fn expired_reset_tokens_are_refused_and_mail_is_delivered_to_the_log_without_smtp() {
    use mash::jobs::entity as jobs;
    // Workers off: the test drives the queue itself.
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    register_with(&app, "late@example.com", PASSWORD, "Flow Tester").await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/password/forgot"))
        .json(&json!({"email": "late@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // Both mails wait on the queue as send_email jobs.
    let queued = jobs::Entity::find().filter(jobs::Column::JobType.eq("send_email")).all(&app.state.db).await.unwrap();
    assert_eq!(queued.len(), 2, "verification and reset mail");
    let reset = queued.iter().find(|j| j.payload["subject"].as_str().unwrap().contains("Reset")).unwrap();
    assert_eq!(reset.payload["to"], "late@example.com");
    let token = token_from(reset.payload["body"].as_str().unwrap(), "/reset-password");
    // Without SMTP, delivery writes the mail to the log; each attempt is recorded.
    assert!(mash::jobs::run_pending(&app.state).await.unwrap() >= 2);
    let left = jobs::Entity::find().filter(jobs::Column::JobType.eq("send_email")).count(&app.state.db).await.unwrap();
    assert_eq!(left, 0, "delivered mail leaves the queue");
    let logged = mash::alerts::entity::delivery::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(logged.iter().all(|d| d.channel == "email" && d.status == "logged" && d.target == "late@example.com"));
    // Expire it.
    app.state.db.execute_unprepared("UPDATE one_time_tokens SET expires_at = created_at").await.unwrap();
    let res = app
        .client
        .post(app.url("/api/v1/auth/password/reset"))
        .json(&json!({"token": token, "newPassword": "an entirely new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "/api/v1/auth/password/reset").await;
}

// ---------------------------------------------------------------------------------------
// OIDC
// ---------------------------------------------------------------------------------------

const ISSUER: &str = "https://idp.example.test/project-1";
const AUDIENCE: &str = "project-1";

async fn jwks_server() -> SocketAddr {
    let jwks: Value = serde_json::from_str(include_str!("../fixtures/oidc-jwks.json")).unwrap();
    let app = Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    addr
}

fn id_token(claims: Value, key_pem: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap()).unwrap()
}

fn claims(sub: &str, email: &str, verified: bool) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "email": email, "email_verified": verified,
           "name": "Ida Provider", "iat": now, "exp": now + 600})
}

const KEY: &str = include_str!("../fixtures/oidc-rsa.pem");
const OTHER_KEY: &str = include_str!("../fixtures/oidc-rsa-other.pem");

async fn oidc_app() -> TestApp {
    let jwks = jwks_server().await;
    let url = format!("http://{jwks}/jwks");
    spawn_app_with(&[("OIDC_ISSUER", ISSUER), ("OIDC_AUDIENCE", AUDIENCE), ("OIDC_JWKS_URL", &url)], Router::new())
        .await
}

async fn exchange(app: &TestApp, token: &str) -> reqwest::Response {
    app.client.post(app.url("/api/v1/auth/oidc/exchange")).json(&json!({"idToken": token})).send().await.unwrap()
}

#[tokio::test]
async fn oidc_exchange_creates_then_finds_the_user_by_subject() {
    let app = oidc_app().await;
    let token = id_token(claims("firebase-uid-1", "ida@example.com", true), KEY, "test-key-1");
    let res = exchange(&app, &token).await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["user"]["email"], "ida@example.com");
    assert_eq!(first["user"]["role"], "CUSTOMER");
    assert_eq!(first["tokenType"], "Bearer");
    // Our own access token works.
    let me = app
        .client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(first["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // The same subject again (even with a changed email claim) is the same user.
    let again = id_token(claims("firebase-uid-1", "ida.new@example.com", true), KEY, "test-key-1");
    let second: Value = exchange(&app, &again).await.json().await.unwrap();
    assert_eq!(second["user"]["id"], first["user"]["id"]);
    let users = mash::users::entity::user::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].external_uid.as_deref(), Some("firebase-uid-1"));
    assert_eq!(users[0].external_issuer.as_deref(), Some(ISSUER));
}

#[tokio::test]
async fn oidc_exchange_refuses_bad_tokens() {
    let app = oidc_app().await;
    let path = "/api/v1/auth/oidc/exchange";
    let mut wrong_aud = claims("s", "a@example.com", true);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("s", "a@example.com", true);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut expired = claims("s", "a@example.com", true);
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    for (what, token) in [
        ("wrong audience", id_token(wrong_aud, KEY, "test-key-1")),
        ("wrong issuer", id_token(wrong_iss, KEY, "test-key-1")),
        ("expired", id_token(expired, KEY, "test-key-1")),
        ("forged signature", id_token(claims("s", "a@example.com", true), OTHER_KEY, "test-key-1")),
        ("unknown key", id_token(claims("s", "a@example.com", true), KEY, "no-such-kid")),
        ("not a JWT", "garbage".to_string()),
    ] {
        let res = exchange(&app, &token).await;
        assert_eq!(res.status(), 401, "{what}");
        assert_error(res, 401, path).await;
    }
    // HS256 signed with the public key as secret (algorithm confusion) is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-key-1".into());
    let hs =
        jsonwebtoken::encode(&header, &claims("s", "a@example.com", true), &EncodingKey::from_secret(b"k")).unwrap();
    assert_error(exchange(&app, &hs).await, 401, path).await;
    assert!(mash::users::entity::user::Entity::find().all(&app.state.db).await.unwrap().is_empty());
}

#[tokio::test]
async fn oidc_links_an_existing_account_only_for_a_verified_email() {
    let app = oidc_app().await;
    let existing = register_with(&app, "owner@example.com", PASSWORD, "Flow Tester").await;
    // Unverified claim for a taken address: refused, nothing linked.
    let res = exchange(&app, &id_token(claims("attacker", "owner@example.com", false), KEY, "test-key-1")).await;
    assert_error(res, 409, "/api/v1/auth/oidc/exchange").await;
    // Verified claim: linked to the existing account.
    let res = exchange(&app, &id_token(claims("owner-sub", "owner@example.com", true), KEY, "test-key-1")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["id"], existing["user"]["id"]);
    assert_eq!(body["user"]["emailVerified"], true);
}

#[tokio::test]
async fn oidc_exchange_without_configuration_is_422() {
    let app = spawn_app_with(&[], Router::new()).await;
    let res = exchange(&app, &id_token(claims("s", "a@example.com", true), KEY, "test-key-1")).await;
    assert_error(res, 422, "/api/v1/auth/oidc/exchange").await;
}
