//! Grower webhooks: settings for owners only (the secret shown only when issued), events signed
//! and retried with a stable id (updates skipped), and private networks refused by default.

use std::collections::BTreeSet;

use axum::Router;
use chrono::{DateTime, Duration};
use mash::{alerts::entity::webhook, jobs::entity as job};
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, get_authed, json_of, user_with_role},
    alerts::alerts_of,
    assert_error, detail_fields,
    greenhouse::{Greenhouse, add_member, create_device, greenhouse, greenhouse_by},
    spawn_app_with,
};

use super::{
    alert_on, create_rule, deliveries, jobs_of, keys, post_readings, set, start_of_readings,
    webhook_receiver::{Hook, Receiver, verify_signature},
};

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

fn webhook_path(gh: &Greenhouse) -> String {
    format!("/api/v1/growers/{}/alert-webhook", gh.grower_id)
}

async fn put_webhook(app: &TestApp, gh: &Greenhouse, by: &Account, body: Value) -> reqwest::Response {
    authed(app, Method::PUT, &webhook_path(gh), &by.access).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn webhook_settings_are_for_owners_and_show_the_secret_only_when_issued() {
    let app =
        spawn_app_with(&[("JOB_CONCURRENCY", "0"), ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let path = webhook_path(&gh);
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let stranger = greenhouse_by(&app, &gh.admin).await.owner;
    let url = "http://127.0.0.1:9/hooks/alerts";

    assert_error(get_authed(&app, &path, &gh.owner.access).await, 404, &path).await;
    // A member may not set it; a user of another grower does not see this grower at all.
    assert_error(put_webhook(&app, &gh, &member, json!({"url": url})).await, 403, &path).await;
    assert_error(put_webhook(&app, &gh, &stranger, json!({"url": url})).await, 404, &path).await;
    assert!(webhook::Entity::find_by_id(gh.grower_id).one(&app.state.db).await.unwrap().is_none());

    let created = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": url})).await, 200).await;
    assert_eq!(created["growerId"], gh.grower_id.to_string());
    assert_eq!(created["url"], url);
    assert_eq!(created["enabled"], true);
    let first = created["secret"].as_str().expect("the secret, on create").to_string();
    assert!(first.len() >= 16, "{first}");
    let row = webhook::Entity::find_by_id(gh.grower_id).one(&app.state.db).await.unwrap().unwrap();
    assert!(!row.secret_sealed.contains(&first), "the secret is stored sealed");

    // Members read it, without the secret; strangers still get 404.
    let shown = json_of(get_authed(&app, &path, &member.access).await, 200).await;
    assert_eq!(shown["url"], url);
    assert_eq!(shown["enabled"], true);
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(!shown.to_string().contains(&first), "{shown}");
    assert_error(get_authed(&app, &path, &stranger.access).await, 404, &path).await;

    // Changing it without rotating keeps the secret and does not show it.
    let changed = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": url, "enabled": false})).await, 200).await;
    assert!(changed.get("secret").is_none(), "{changed}");
    assert_eq!(changed["enabled"], false);
    assert_eq!(json_of(get_authed(&app, &path, &gh.owner.access).await, 200).await["enabled"], false);

    // An admin may rotate it: a new secret, shown once.
    let rotated =
        json_of(put_webhook(&app, &gh, &gh.admin, json!({"url": url, "rotateSecret": true})).await, 200).await;
    let second = rotated["secret"].as_str().expect("the new secret").to_string();
    assert_ne!(second, first);
    assert_eq!(rotated["enabled"], true, "enabled defaults to true");
    let again = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": url, "rotateSecret": false})).await, 200).await;
    assert!(again.get("secret").is_none(), "{again}");

    // Not a URL we would call.
    let res = put_webhook(&app, &gh, &gh.owner, json!({"url": "ftp://hooks.example.com/x"})).await;
    assert_eq!(detail_fields(&assert_error(res, 400, &path).await), vec!["url"]);

    // Deleting: owners only, then it is gone.
    let del = |who: &Account| authed(&app, Method::DELETE, &path, &who.access).send();
    assert_error(del(&member).await.unwrap(), 403, &path).await;
    assert_eq!(del(&gh.owner).await.unwrap().status(), 204);
    assert_error(get_authed(&app, &path, &gh.owner.access).await, 404, &path).await;
    assert_error(del(&gh.owner).await.unwrap(), 404, &path).await;
}

#[tokio::test]
async fn webhook_events_are_signed_retried_with_a_stable_id_and_skip_updates() {
    let receiver = Receiver::start().await;
    let app =
        spawn_app_with(&[("JOB_CONCURRENCY", "0"), ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    let put = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": receiver.url()})).await, 200).await;
    let old_secret = put["secret"].as_str().unwrap().to_string();
    let put =
        json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": receiver.url(), "rotateSecret": true})).await, 200)
            .await;
    let secret = put["secret"].as_str().unwrap().to_string();
    let t0 = start_of_readings();

    // Checks one received event: signature (with the current secret only), headers, shape.
    let check = |h: &Hook, not_before: i64, not_after: i64| -> Value {
        let signature = h.signature.as_deref().expect("Mash-Signature");
        let t = verify_signature(signature, &secret, &h.body).unwrap_or_else(|e| panic!("{e}; body {}", h.body));
        assert!((not_before..=not_after).contains(&t), "t={t} outside {not_before}..={not_after}");
        assert!(verify_signature(signature, &old_secret, &h.body).is_err(), "the rotated-out secret still verifies");
        assert!(h.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{h:?}");
        let body = h.json();
        assert_eq!(keys(&body), set(["createdAt", "data", "id", "type"]), "{body}");
        assert_eq!(h.event_id.as_deref(), body["id"].as_str(), "Mash-Event-Id is the event id");
        DateTime::parse_from_rfc3339(body["createdAt"].as_str().unwrap()).expect("createdAt is RFC 3339");
        assert_eq!(keys(&body["data"]), set(["alert"]), "{body}");
        body
    };

    // Created, then repeated in the same batch (an update): the receiver fails the first try.
    receiver.answer_next(500);
    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0), (45.0, t0 + Duration::seconds(1))]).await;
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    assert_eq!(alert["count"], 2, "the repeat was folded in: {alert}");
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "only the creation is sent: {hooks:?}");
    let first = check(&hooks[0], before, after);
    assert_eq!(first["type"], "alert.created");
    let sent_alert = &first["data"]["alert"];
    for field in ["id", "growerId", "deviceId", "ruleId", "metric", "severity"] {
        assert_eq!(sent_alert[field], alert[field], "{field}: {sent_alert}");
    }
    assert_eq!(sent_alert["status"], "active");
    let hooked = deliveries(&app, "webhook").await;
    let tries: Vec<(&str, i32)> = hooked.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(tries, vec![("failed", 1)]);
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(hooked[0].alert_id, Some(alert_id));
    let jobs = jobs_of(&app, "deliver_webhook").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempts), (job::QUEUED, 1));
    app.run_jobs().await;
    assert_eq!(receiver.hooks().len(), 1, "the retry waits for its backoff");

    // The retry: same event id, same bytes, signed again.
    app.state.clock.advance(Duration::hours(2));
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    check(&hooks[1], before, after);
    assert_eq!(hooks[1].event_id, hooks[0].event_id);
    assert_eq!(hooks[1].body, hooks[0].body);
    let hooked = deliveries(&app, "webhook").await;
    let tries: Vec<(&str, i32)> = hooked.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(tries, vec![("failed", 1), ("sent", 2)]);
    assert!(jobs_of(&app, "deliver_webhook").await.is_empty());

    // A normal reading resolves the alert: alert.resolved, a new event id.
    post_readings(&app, &gh.owner, &sensor, "temp", &[(20.0, t0 + Duration::seconds(2))]).await;
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 3, "{hooks:?}");
    let resolved = check(&hooks[2], before, after);
    assert_eq!(resolved["type"], "alert.resolved");
    assert_eq!(resolved["data"]["alert"]["id"], alert["id"]);
    assert_eq!(resolved["data"]["alert"]["status"], "resolved");
    assert_ne!(hooks[2].event_id, hooks[0].event_id);

    // A new alert, acknowledged by a person: alert.created, then alert.acknowledged.
    post_readings(&app, &gh.owner, &sensor, "temp", &[(50.0, t0 + Duration::seconds(3))]).await;
    app.run_jobs().await;
    let open = alerts_of(&app, &gh).await.into_iter().find(|a| a["status"] == "active").expect("a new alert");
    let res =
        authed(&app, Method::POST, &format!("/api/v1/alerts/{}/ack", open["id"].as_str().unwrap()), &gh.owner.access)
            .send()
            .await
            .unwrap();
    json_of(res, 200).await;
    let before = app.state.clock.now().timestamp();
    app.run_jobs().await;
    let after = app.state.clock.now().timestamp();
    let hooks = receiver.hooks();
    let kinds: Vec<String> = hooks.iter().map(Hook::kind).collect();
    assert_eq!(kinds, ["alert.created", "alert.created", "alert.resolved", "alert.created", "alert.acknowledged"]);
    let acked = check(&hooks[4], before, after);
    assert_eq!(acked["data"]["alert"]["id"], open["id"]);
    assert_eq!(acked["data"]["alert"]["status"], "acknowledged");
    let ids: BTreeSet<&str> = hooks.iter().map(|h| h.event_id.as_deref().unwrap()).collect();
    assert_eq!(ids.len(), 4, "one id per event, the retry reusing its own: {hooks:?}");

    // Without a webhook, nothing more is sent.
    let res = authed(&app, Method::DELETE, &webhook_path(&gh), &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = authed(
        &app,
        Method::POST,
        &format!("/api/v1/alerts/{}/resolve", open["id"].as_str().unwrap()),
        &gh.owner.access,
    )
    .send()
    .await
    .unwrap();
    json_of(res, 200).await;
    app.run_jobs().await;
    assert_eq!(receiver.hooks().len(), 5);
    let hooked = deliveries(&app, "webhook").await;
    let tries: Vec<(&str, i32)> = hooked.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(tries, vec![("failed", 1), ("sent", 2), ("sent", 1), ("sent", 1), ("sent", 1)]);

    // The alert in an event is the alert as the API shows it: same fields, same instants.
    let shown = json_of(get_authed(&app, &format!("/api/v1/alerts/{alert_id}"), &gh.owner.access).await, 200).await;
    assert_eq!(first["data"]["alert"]["createdAt"], shown["createdAt"], "alert.created vs GET /alerts/{alert_id}");
    assert_eq!(resolved["data"]["alert"], shown, "alert.resolved vs GET /alerts/{alert_id}");
}

#[tokio::test]
async fn webhooks_to_private_networks_are_refused_by_default() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], Router::new()).await;
    let gh = greenhouse(&app).await;
    let path = webhook_path(&gh);
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:8080/hooks",
        "http://[::1]/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.1.10/hooks",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let res = put_webhook(&app, &gh, &gh.owner, json!({"url": url})).await;
        let err = assert_error(res, 400, &path).await;
        assert_eq!(detail_fields(&err), vec!["url"], "{url}: {err}");
    }
    assert!(webhook::Entity::find_by_id(gh.grower_id).one(&app.state.db).await.unwrap().is_none());
    assert_error(get_authed(&app, &path, &gh.owner.access).await, 404, &path).await;
    // A public address is fine (nothing is called when it is set).
    let ok = json_of(put_webhook(&app, &gh, &gh.owner, json!({"url": "https://93.184.216.34/hooks"})).await, 200).await;
    assert!(ok["secret"].is_string(), "{ok}");
}
