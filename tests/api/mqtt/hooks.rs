//! The broker's HTTP auth and ACL hooks: absent without a secret, a device signs in with its
//! own token and reaches only its own topics, and only the server is a superuser.

use std::net::TcpListener;

use axum::Router;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{authed, json_of},
    assert_error,
    greenhouse::{create_device, greenhouse_with_device},
    spawn_app_with,
};

use super::{HOST, desired_topic, telemetry_topic, unique_client_id};

// ---------------------------------------------------------------------------------------------
// Broker hooks
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "hook-secret-0123456789";
const SERVER_USER: &str = "mash-server";
const SERVER_PASS: &str = "server-pass";

/// An app with the hooks on, whose own MQTT identity is `SERVER_USER`. Its broker address is
/// a closed port: the hooks do not need the subscriber to be connected.
async fn hooks_app() -> TestApp {
    let closed = TcpListener::bind((HOST, 0)).unwrap().local_addr().unwrap().port();
    let url = format!("mqtt://{SERVER_USER}:{SERVER_PASS}@{HOST}:{closed}");
    let client_id = unique_client_id();
    spawn_app_with(
        &[("MQTT_URL", url.as_str()), ("MQTT_CLIENT_ID", client_id.as_str()), ("MQTT_AUTH_SECRET", SECRET)],
        Router::new(),
    )
    .await
}

async fn hook(app: &TestApp, name: &str, secret: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(&format!("/api/v1/mqtt/{name}"))).json(&body);
    if let Some(s) = secret {
        req = req.header("x-mqtt-secret", s);
    }
    req.send().await.unwrap()
}

async fn hook_form(app: &TestApp, name: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    app.client
        .post(app.url(&format!("/api/v1/mqtt/{name}")))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap()
}

async fn allowed(res: reqwest::Response, superuser: bool) {
    let body = json_of(res, 200).await;
    assert_eq!(body, json!({ "result": "allow", "is_superuser": superuser, "ok": true }));
}

async fn denied(res: reqwest::Response, name: &str) {
    assert_error(res, 403, &format!("/api/v1/mqtt/{name}")).await;
}

#[tokio::test]
async fn hooks_are_absent_without_a_secret_and_refuse_a_wrong_one() {
    let plain = spawn_app_with(&[], Router::new()).await;
    let body = json!({ "username": "x", "password": "y", "topic": "t", "acc": 1 });
    for name in ["auth", "acl", "superuser"] {
        let path = format!("/api/v1/mqtt/{name}");
        assert_error(hook(&plain, name, Some(SECRET), body.clone()).await, 404, &path).await;
    }

    let app = hooks_app().await;
    for name in ["auth", "acl", "superuser"] {
        let path = format!("/api/v1/mqtt/{name}");
        assert_error(hook(&app, name, None, body.clone()).await, 401, &path).await;
        assert_error(hook(&app, name, Some("wrong"), body.clone()).await, 401, &path).await;
        assert_error(hook(&app, name, Some(&format!("{SECRET}x")), body.clone()).await, 401, &path).await;
        assert_error(hook(&app, name, Some(""), body.clone()).await, 401, &path).await;
        let res =
            app.client.post(app.url(&path)).header("authorization", "Bearer wrong").json(&body).send().await.unwrap();
        assert_error(res, 401, &path).await;
    }
    // The right secret either way.
    let res = app
        .client
        .post(app.url("/api/v1/mqtt/superuser"))
        .header("authorization", format!("Bearer {SECRET}"))
        .json(&json!({ "username": SERVER_USER }))
        .send()
        .await
        .unwrap();
    allowed(res, true).await;
    allowed(hook(&app, "superuser", Some(SECRET), json!({ "username": SERVER_USER })).await, true).await;
}

#[tokio::test]
async fn the_auth_hook_accepts_a_device_with_its_own_token_and_the_server() {
    let app = hooks_app().await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let other = create_device(&app, &gh.owner, gh.grower_id, "other").await;
    let auth = |username: String, password: &str| json!({ "clientid": username.clone(), "username": username, "password": password });

    allowed(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &dev.token)).await, false).await;
    // A device must connect under its own id: another client id (the server's persistent
    // session above all) or none at all is refused, so no device can take over a session.
    for clientid in [Some("mash-ingest".to_string()), Some(other.id.to_string()), Some("c1".to_string()), None] {
        let mut body = json!({ "username": dev.id, "password": dev.token });
        if let Some(c) = clientid {
            body["clientid"] = json!(c);
        }
        denied(hook(&app, "auth", Some(SECRET), body).await, "auth").await;
    }
    allowed(hook(&app, "auth", Some(SECRET), auth(SERVER_USER.into(), SERVER_PASS)).await, true).await;
    // Brokers may send a form instead of JSON.
    let id = dev.id.to_string();
    allowed(hook_form(&app, "auth", &[("clientid", &id), ("username", &id), ("password", &dev.token)]).await, false)
        .await;
    allowed(hook_form(&app, "auth", &[("username", SERVER_USER), ("password", SERVER_PASS)]).await, true).await;

    for (username, password) in [
        (dev.id.to_string(), format!("{}x", dev.token)),
        (dev.id.to_string(), other.token.clone()),
        (other.id.to_string(), dev.token.clone()),
        (dev.id.to_string(), String::new()),
        ("not-a-uuid".to_string(), dev.token.clone()),
        (Uuid::now_v7().to_string(), dev.token.clone()),
        (SERVER_USER.to_string(), "wrong".to_string()),
        (SERVER_USER.to_string(), String::new()),
    ] {
        denied(hook(&app, "auth", Some(SECRET), auth(username, &password)).await, "auth").await;
    }
    denied(hook_form(&app, "auth", &[("username", &id), ("password", "nope")]).await, "auth").await;

    // A rotated token no longer authenticates; the new one does. A deleted device never.
    let res = authed(&app, Method::POST, &format!("/api/v1/devices/{}/rotate-token", dev.id), &gh.owner.access)
        .send()
        .await
        .unwrap();
    let new_token = json_of(res, 200).await["deviceToken"].as_str().unwrap().to_string();
    denied(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &dev.token)).await, "auth").await;
    allowed(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &new_token)).await, false).await;
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", dev.id), &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    denied(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &new_token)).await, "auth").await;

    // A body that is not the hook's shape is a 400.
    let res = hook(&app, "auth", Some(SECRET), json!({ "password": "x" })).await;
    assert_error(res, 400, "/api/v1/mqtt/auth").await;
}

#[tokio::test]
async fn the_acl_hook_lets_a_device_publish_and_read_only_its_own_topics() {
    let app = hooks_app().await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let other = create_device(&app, &gh.owner, gh.grower_id, "other").await;
    let acl = |username: &str, topic: String, acc: Value| json!({ "username": username, "topic": topic, "acc": acc });
    let me = dev.id.to_string();

    for acc in [json!(2), json!("2"), json!("publish")] {
        allowed(hook(&app, "acl", Some(SECRET), acl(&me, telemetry_topic(dev.id), acc)).await, false).await;
    }
    for acc in [json!(1), json!(4), json!("subscribe")] {
        allowed(hook(&app, "acl", Some(SECRET), acl(&me, desired_topic(dev.id), acc)).await, false).await;
    }
    let refused = [
        (telemetry_topic(other.id), json!(2)),
        (desired_topic(other.id), json!(1)),
        (desired_topic(dev.id), json!(2)),
        (desired_topic(dev.id), json!("publish")),
        (telemetry_topic(dev.id), json!(1)),
        (telemetry_topic(dev.id), json!(4)),
        (telemetry_topic(dev.id), json!("subscribe")),
        (telemetry_topic(dev.id), json!(3)),
        (desired_topic(dev.id), json!(3)),
        ("mash/devices/+/telemetry".to_string(), json!(4)),
        ("mash/devices/#".to_string(), json!(4)),
        ("#".to_string(), json!(1)),
        (format!("mash/devices/{}/telemetry/extra", dev.id), json!(2)),
        (format!("other/{}/telemetry", dev.id), json!(2)),
    ];
    for (topic, acc) in refused {
        denied(hook(&app, "acl", Some(SECRET), acl(&me, topic, acc)).await, "acl").await;
    }
    // An unknown device, or a username that is no device.
    let ghost = Uuid::now_v7();
    denied(hook(&app, "acl", Some(SECRET), acl(&ghost.to_string(), telemetry_topic(ghost), json!(2))).await, "acl")
        .await;
    denied(hook(&app, "acl", Some(SECRET), acl("someone", telemetry_topic(dev.id), json!(2))).await, "acl").await;

    // The server's identity may do anything.
    allowed(hook(&app, "acl", Some(SECRET), acl(SERVER_USER, "mash/devices/+/telemetry".into(), json!(4))).await, true)
        .await;
    allowed(hook(&app, "acl", Some(SECRET), acl(SERVER_USER, desired_topic(dev.id), json!(2))).await, true).await;

    // Form-encoded, as mosquitto-go-auth sends it.
    let t = telemetry_topic(dev.id);
    allowed(hook_form(&app, "acl", &[("username", &me), ("topic", &t), ("acc", "2"), ("clientid", "c")]).await, false)
        .await;
    denied(hook_form(&app, "acl", &[("username", &me), ("topic", &t), ("acc", "1")]).await, "acl").await;

    // A deleted device loses its topics.
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", dev.id), &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    denied(hook(&app, "acl", Some(SECRET), acl(&me, telemetry_topic(dev.id), json!(2))).await, "acl").await;

    // An access value that means nothing is a 400 naming it.
    let res = hook(&app, "acl", Some(SECRET), acl(&other.id.to_string(), telemetry_topic(other.id), json!(9))).await;
    let body = assert_error(res, 400, "/api/v1/mqtt/acl").await;
    assert_eq!(body["details"][0]["field"], "acc", "{body}");
}

#[tokio::test]
async fn only_the_server_is_a_superuser() {
    let app = hooks_app().await;
    let (_, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    allowed(hook(&app, "superuser", Some(SECRET), json!({ "username": SERVER_USER })).await, true).await;
    allowed(hook_form(&app, "superuser", &[("username", SERVER_USER)]).await, true).await;
    for username in [dev.id.to_string(), "admin".to_string(), String::new(), format!("{SERVER_USER} ")] {
        denied(hook(&app, "superuser", Some(SECRET), json!({ "username": username })).await, "superuser").await;
    }
    denied(hook_form(&app, "superuser", &[("username", &dev.id.to_string())]).await, "superuser").await;

    // Without credentials in MQTT_URL the server has no hook identity at all.
    let app = spawn_app_with(&[("MQTT_AUTH_SECRET", SECRET)], Router::new()).await;
    denied(hook(&app, "superuser", Some(SECRET), json!({ "username": SERVER_USER })).await, "superuser").await;
    denied(hook(&app, "auth", Some(SECRET), json!({ "username": SERVER_USER, "password": SERVER_PASS })).await, "auth")
        .await;
}
