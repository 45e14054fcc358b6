//! FCM push: critical alerts pushed to each member's token with one verified, cached grant;
//! an unregistered token forgotten and a refused message dead-lettered; an outage retried later;
//! lower severities not pushed.

use std::collections::BTreeSet;

use axum::Router;
use chrono::Duration;
use mash::{alerts::entity::push_token, jobs::entity as job};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{get_authed, json_of, user_with_role},
    greenhouse::{add_member, create_device, greenhouse},
    spawn_app_with,
};

use super::{
    alert_on, create_rule, deliveries,
    fake_fcm::{CLIENT_EMAIL, FakeFcm, PROJECT, SCOPE, fcm_app, service_account, unregistered},
    jobs_of, keys, new_push_token, post_readings, set, start_of_readings,
};

// ---------------------------------------------------------------------------------------------
// FCM push
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn critical_alerts_are_pushed_to_each_members_token_with_one_verified_and_cached_grant() {
    let fake = FakeFcm::start().await;
    let app = fcm_app(&fake, &[]).await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    let owner_token = new_push_token(&app, &gh.owner, "owner-phone-registration-token", "ios").await;
    let member_token = new_push_token(&app, &member, "member-phone-registration-token", "android").await;
    new_push_token(&app, &outsider, "outsider-phone-registration-token", "android").await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let other_sensor = create_device(&app, &gh.owner, gh.grower_id, "other sensor").await;
    let rule = create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    let t0 = start_of_readings();

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0)]).await;
    app.run_jobs().await;

    // One grant, verified by the fake (signature, kid, iss, aud, scope, lifetime).
    assert_eq!(fake.refused(), Vec::<String>::new(), "the fake token endpoint refused the grant");
    let grants = fake.grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].path, "/token");
    assert_eq!(grants[0].claims["iss"], CLIENT_EMAIL);
    assert_eq!(grants[0].claims["aud"], fake.url("/token"));
    assert_eq!(grants[0].claims["scope"], SCOPE);
    let issued = fake.issued();
    assert_eq!(fake.other(), Vec::<String>::new());

    // One message per member token, none to the outsider, each exactly as FCM v1 wants it.
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    assert_eq!(alert["ruleId"], rule["id"]);
    let sent = fake.sent();
    let tokens: BTreeSet<String> = sent.iter().map(|s| s.token().to_string()).collect();
    assert_eq!(tokens, set(["member-phone-registration-token", "owner-phone-registration-token"]), "{sent:?}");
    for s in &sent {
        assert_eq!(s.path, format!("/v1/projects/{PROJECT}/messages:send"));
        assert_eq!(s.authorization.as_deref(), Some(format!("Bearer {}", issued[0]).as_str()));
        assert!(s.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{s:?}");
        assert_eq!(keys(&s.body), set(["message"]), "{}", s.body);
        let m = &s.body["message"];
        assert_eq!(keys(m), set(["android", "apns", "data", "notification", "token"]), "{m}");
        assert_eq!(keys(&m["notification"]), set(["body", "title"]), "{m}");
        let title = m["notification"]["title"].as_str().unwrap();
        assert!(title.contains("temp") && title.to_lowercase().contains("critical"), "{title}");
        assert_eq!(m["notification"]["body"], alert["message"], "{m}");
        let data = &m["data"];
        assert!(data.as_object().unwrap().values().all(Value::is_string), "FCM data values are strings: {data}");
        let expected = json!({
            "type": "alert",
            "alertId": alert["id"],
            "growerId": gh.grower_id.to_string(),
            "deviceId": sensor.id.to_string(),
            "ruleId": rule["id"],
            "metric": "temp",
            "severity": "critical",
            "status": "active",
            "value": data["value"],
        });
        assert_eq!(data, &expected, "{m}");
        assert_eq!(data["value"].as_str().unwrap().parse::<f64>().unwrap(), 40.0, "{data}");
        assert_eq!(m["android"], json!({"priority": "high"}));
        assert_eq!(m["apns"], json!({"headers": {"apns-priority": "10"}}));
    }

    // Each attempt is recorded against the alert.
    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();
    for d in &pushes {
        assert_eq!(d.status, "sent", "{d:?}");
        assert_eq!(d.alert_id, Some(alert_id));
        assert_eq!(d.attempt, 1);
        assert_eq!(d.error, None);
    }
    let targets: Vec<&str> = pushes.iter().map(|d| d.target.as_str()).collect();
    for id in [owner_token, member_token] {
        assert!(targets.iter().any(|t| t.contains(&id.to_string())), "{id} in {targets:?}");
    }
    assert!(jobs_of(&app, "send_push").await.is_empty());

    // A second alert, in a later run: the access token comes from the cache.
    post_readings(&app, &gh.owner, &other_sensor, "temp", &[(41.0, t0 + Duration::seconds(1))]).await;
    app.run_jobs().await;
    let second = alert_on(&app, &gh, &other_sensor, "temp").await;
    assert_eq!(fake.grants().len(), 1, "the token endpoint was asked again: {:?}", fake.grants());
    assert_eq!(fake.refused(), Vec::<String>::new());
    let sent = fake.sent();
    assert_eq!(sent.len(), 4, "{sent:?}");
    for s in &sent[2..] {
        assert_eq!(s.body["message"]["data"]["alertId"], second["id"]);
        assert_eq!(s.authorization.as_deref(), Some(format!("Bearer {}", issued[0]).as_str()));
    }
    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 4);
    assert!(pushes.iter().all(|d| d.status == "sent"), "{pushes:?}");
}

#[tokio::test]
async fn an_unregistered_token_is_forgotten_and_a_refused_message_is_dead_lettered() {
    let fake = FakeFcm::start().await;
    let app = fcm_app(&fake, &[]).await;
    let gh = greenhouse(&app).await;
    let gone = new_push_token(&app, &gh.owner, "uninstalled-app-token", "android").await;
    let refused = new_push_token(&app, &gh.owner, "refused-message-token", "web").await;
    let good = new_push_token(&app, &gh.owner, "good-token", "ios").await;
    fake.script("uninstalled-app-token", 404, unregistered());
    let invalid = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
        "message": "Invalid value at 'message.data[0].value'",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]}});
    fake.script("refused-message-token", 400, invalid);
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, start_of_readings())]).await;
    app.run_jobs().await;
    assert_eq!(fake.refused(), Vec::<String>::new());
    assert_eq!(fake.sent().len(), 3, "{:?}", fake.sent());
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();

    // UNREGISTERED: the token row is gone; the others stay.
    let left: BTreeSet<Uuid> =
        push_token::Entity::find().all(&app.state.db).await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(left, BTreeSet::from([refused, good]));
    let listed = json_of(get_authed(&app, "/api/v1/push-tokens", &gh.owner.access).await, 200).await;
    let listed: BTreeSet<&str> = listed.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(listed, BTreeSet::from([refused.to_string().as_str(), good.to_string().as_str()]));

    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 3, "{pushes:?}");
    assert!(pushes.iter().all(|d| d.alert_id == Some(alert_id) && d.attempt == 1), "{pushes:?}");
    let of = |id: Uuid| pushes.iter().find(|d| d.target.contains(&id.to_string())).unwrap_or_else(|| panic!("{id}"));
    assert_eq!(of(gone).status, "unregistered");
    assert!(
        of(gone).error.as_deref().is_some_and(|e| e.contains("UNREGISTERED") || e.contains("404")),
        "{:?}",
        of(gone)
    );
    assert_eq!(of(good).status, "sent");
    assert_eq!(of(refused).status, "failed");
    assert!(of(refused).error.is_some());

    // The unregistered token's job is done; the refused message is dead-lettered, not retried.
    let jobs = jobs_of(&app, "send_push").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, job::DEAD, "{jobs:?}");
    assert_eq!(jobs[0].attempts, 1);
    app.state.clock.advance(Duration::hours(2));
    app.run_jobs().await;
    assert_eq!(fake.sent().len(), 3, "nothing is sent again");
}

#[tokio::test]
async fn an_fcm_outage_is_retried_later_and_lower_severities_are_not_pushed() {
    let fake = FakeFcm::start().await;
    // The key file names another token endpoint; FCM_TOKEN_URI wins, and is the grant's audience.
    let account = service_account(&fake.url("/key-file/token"));
    let base = fake.base();
    let token_uri = fake.url("/oauth2/v4/token");
    let app = spawn_app_with(
        &[
            ("JOB_CONCURRENCY", "0"),
            ("FCM_SERVICE_ACCOUNT_JSON", &account),
            ("FCM_API_BASE", &base),
            ("FCM_TOKEN_URI", &token_uri),
        ],
        Router::new(),
    )
    .await;
    let gh = greenhouse(&app).await;
    let token_id = new_push_token(&app, &gh.owner, "flaky-token", "android").await;
    let sensor = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    create_rule(&app, &gh.owner, gh.grower_id, "temp", "critical").await;
    create_rule(&app, &gh.owner, gh.grower_id, "humidity", "warning").await;
    create_rule(&app, &gh.owner, gh.grower_id, "co2", "info").await;
    // An outage page from the front end, then a quota refusal: both are worth a retry by their
    // status alone.
    fake.script("flaky-token", 503, json!("<html><title>503 Service Unavailable</title></html>"));
    fake.script(
        "flaky-token",
        429,
        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded for the project."}}),
    );
    let t0 = start_of_readings();

    post_readings(&app, &gh.owner, &sensor, "temp", &[(40.0, t0)]).await;
    app.run_jobs().await;
    assert_eq!(fake.refused(), Vec::<String>::new());
    let grants = fake.grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].path, "/oauth2/v4/token");
    assert_eq!(grants[0].claims["aud"], token_uri);
    assert_eq!(fake.sent().len(), 1);
    let alert = alert_on(&app, &gh, &sensor, "temp").await;
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();

    // Still queued, one attempt used, due later; the failed attempt is recorded.
    let jobs = jobs_of(&app, "send_push").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, job::QUEUED, "{jobs:?}");
    assert_eq!(jobs[0].attempts, 1);
    assert!(jobs[0].run_at > app.state.clock.now(), "{jobs:?}");
    assert!(jobs[0].last_error.as_deref().is_some_and(|e| e.contains("503")), "{jobs:?}");
    let pushes = deliveries(&app, "push").await;
    assert_eq!(pushes.len(), 1);
    assert_eq!((pushes[0].status.as_str(), pushes[0].attempt), ("failed", 1), "{pushes:?}");
    assert_eq!(pushes[0].alert_id, Some(alert_id));

    // Not before it is due.
    app.run_jobs().await;
    assert_eq!(fake.sent().len(), 1);

    // Due later: the 429, and again queued.
    app.state.clock.advance(Duration::hours(2));
    app.run_jobs().await;
    assert_eq!(fake.sent().len(), 2);
    let jobs = jobs_of(&app, "send_push").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempts), (job::QUEUED, 2), "{jobs:?}");
    assert!(jobs[0].last_error.as_deref().is_some_and(|e| e.contains("429")), "{jobs:?}");

    // Then it goes through.
    app.state.clock.advance(Duration::hours(2));
    app.run_jobs().await;
    let sent = fake.sent();
    assert_eq!(sent.len(), 3, "{sent:?}");
    for s in &sent {
        assert_eq!(s.token(), "flaky-token");
        assert_eq!(s.body, sent[0].body, "every attempt sends the same message");
    }
    assert_eq!(sent[2].body["message"]["data"]["alertId"], alert["id"]);
    assert!(jobs_of(&app, "send_push").await.is_empty());
    let pushes = deliveries(&app, "push").await;
    let attempts: Vec<(&str, i32)> = pushes.iter().map(|d| (d.status.as_str(), d.attempt)).collect();
    assert_eq!(attempts, vec![("failed", 1), ("failed", 2), ("sent", 3)]);
    assert!(pushes.iter().all(|d| d.target.contains(&token_id.to_string())), "{pushes:?}");
    assert_eq!(fake.grants().len(), 1, "the access token was cached across the retries");

    // Warning and info alerts open, but are not pushed.
    post_readings(&app, &gh.owner, &sensor, "humidity", &[(90.0, t0 + Duration::seconds(1))]).await;
    post_readings(&app, &gh.owner, &sensor, "co2", &[(900.0, t0 + Duration::seconds(2))]).await;
    app.run_jobs().await;
    alert_on(&app, &gh, &sensor, "humidity").await;
    alert_on(&app, &gh, &sensor, "co2").await;
    assert_eq!(fake.sent().len(), 3, "{:?}", fake.sent());
    assert!(jobs_of(&app, "send_push").await.is_empty());
    assert_eq!(deliveries(&app, "push").await.len(), 3);
}
