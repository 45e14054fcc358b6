//! The alert lifecycle (repeats update the one open alert, ack and resolve are audited and
//! announced) and tenancy (growers reach only their own alerts and rules).

use chrono::Duration;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{audit_rows, authed, get_authed, json_of, register, user_with_role},
    alerts::{alert_action, alert_path, alerts_of, list_alerts, new_rule, post_rule, rules_path},
    assert_error, detail_fields,
    greenhouse::{add_member, create_device, greenhouse, greenhouse_by, reading},
    ts_of,
};

use super::{alert_events, app, base, changes, get_alert, patch_rule, rule_path, send, watch};

// ---------------------------------------------------------------------------------------------
// The alert lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn repeats_update_the_one_open_alert_and_auto_resolve_false_keeps_it_open() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "warning", "autoResolve": false}),
    )
    .await;
    assert_eq!(rule["autoResolve"], false);
    let mut rx = watch(&app, gh.grower_id);
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);

    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, at(0))]).await;
    let opened = alerts_of(&app, &gh).await;
    assert_eq!(opened.len(), 1);
    let id = opened[0]["id"].clone();
    let first_seen = ts_of(&opened[0]["lastSeenAt"]);

    send(&app, &gh.owner, vec![reading(dev.id, "temp", 32.0, at(1))]).await;
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 33.0, at(2)), reading(dev.id, "temp", 34.0, at(3))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "repeats do not pile up: {list:?}");
    let a = &list[0];
    assert_eq!(a["id"], id);
    assert_eq!(a["count"], 4);
    assert_eq!(a["value"], 34.0, "the latest breaching value");
    assert!(a["message"].as_str().unwrap().contains("34"), "{a}");
    assert!(ts_of(&a["lastSeenAt"]) >= first_seen);
    assert_eq!(a["createdAt"], opened[0]["createdAt"]);
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["created", "updated", "updated"], "one update per batch");
    assert_eq!(ev[2]["alert"]["count"], 4);
    assert_eq!(ev[2]["alert"]["value"], 34.0);

    // autoResolve=false: a normal reading does not resolve it.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 20.0, at(4))]).await;
    let a = get_alert(&app, &gh.owner, &id).await;
    assert_eq!(a["status"], "active", "{a}");
    assert_eq!(a["count"], 4);
    assert!(alert_events(&mut rx, gh.grower_id).is_empty());
    // And breaching again updates the same alert.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 35.0, at(5))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["count"], 5);
    assert_eq!(list[0]["value"], 35.0);
}

#[tokio::test]
async fn ack_and_resolve_move_the_alert_and_are_audited_and_announced() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.admin, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "critical"}),
    )
    .await;
    let mut rx = watch(&app, gh.grower_id);
    let t0 = base();
    let at = |s: i64| t0 + Duration::seconds(s);
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, at(0))]).await;
    let id = alerts_of(&app, &gh).await[0]["id"].clone();

    // A MEMBER (not an owner) acknowledges.
    let acked = json_of(alert_action(&app, &member, &id, "ack").await, 200).await;
    assert_eq!(acked["id"], id);
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledgedBy"], member.id.to_string());
    assert!(acked["acknowledgedAt"].is_string(), "{acked}");
    assert!(acked.get("resolvedAt").is_none_or(Value::is_null));
    // Again (by someone else): 200, unchanged.
    let again = json_of(alert_action(&app, &gh.owner, &id, "ack").await, 200).await;
    assert_eq!(again["status"], "acknowledged");
    assert_eq!(again["acknowledgedBy"], member.id.to_string());
    assert_eq!(again["acknowledgedAt"], acked["acknowledgedAt"]);
    let acks = audit_rows(&app, "alert.acknowledge").await;
    assert_eq!(acks.len(), 1, "only the real acknowledgement is audited: {acks:?}");
    assert_eq!(acks[0].user_id, Some(member.id));
    assert_eq!(acks[0].resource_type.as_deref(), Some("alert"));
    assert_eq!(acks[0].resource_id.as_deref(), id.as_str());

    // A repeat updates the acknowledged alert, which stays acknowledged.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 32.0, at(1))]).await;
    let a = get_alert(&app, &gh.owner, &id).await;
    assert_eq!(a["status"], "acknowledged");
    assert_eq!(a["count"], 2);
    assert_eq!(a["value"], 32.0);

    // The owner resolves it.
    let resolved = json_of(alert_action(&app, &gh.owner, &id, "resolve").await, 200).await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolvedBy"], gh.owner.id.to_string());
    assert!(resolved["resolvedAt"].is_string());
    assert_eq!(resolved["acknowledgedBy"], member.id.to_string(), "the acknowledgement is kept");
    assert_eq!(resolved["count"], 2);
    let path = format!("{}/resolve", alert_path(&id));
    assert_error(alert_action(&app, &gh.owner, &id, "resolve").await, 409, &path).await;
    let path = format!("{}/ack", alert_path(&id));
    assert_error(alert_action(&app, &member, &id, "ack").await, 409, &path).await;
    let res = audit_rows(&app, "alert.resolve").await;
    assert_eq!(res.len(), 1, "{res:?}");
    assert_eq!(res[0].user_id, Some(gh.owner.id));
    assert_eq!(res[0].resource_id.as_deref(), id.as_str());
    assert_eq!(audit_rows(&app, "alert.acknowledge").await.len(), 1, "a refused ack is not audited");

    // The ack and resolve announcements go out through the queue, in order.
    app.run_jobs().await;
    let ev = alert_events(&mut rx, gh.grower_id);
    assert_eq!(changes(&ev), ["created", "acknowledged", "updated", "resolved"]);
    assert_eq!(ev[1]["alert"]["status"], "acknowledged");
    assert_eq!(ev[1]["alert"]["acknowledgedBy"], member.id.to_string());
    assert_eq!(ev[3]["alert"]["status"], "resolved");
    assert_eq!(ev[3]["alert"]["resolvedBy"], gh.owner.id.to_string());

    // The rule firing again opens a new alert.
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 33.0, at(2))]).await;
    let active = list_alerts(&app, &gh.owner, &format!("growerId={}&status=active", gh.grower_id)).await;
    assert_eq!(active["meta"]["total"], 1, "{active}");
    let fresh = &active["data"][0];
    assert_ne!(fresh["id"], id, "a resolved alert is never reopened");
    assert_eq!(fresh["count"], 1);
    assert_eq!(fresh["value"], 33.0);
    assert_eq!(get_alert(&app, &gh.owner, &id).await["status"], "resolved");
    assert_eq!(changes(&alert_events(&mut rx, gh.grower_id)), ["created"]);

    // The list filters.
    let g = gh.grower_id;
    let resolved = list_alerts(&app, &gh.owner, &format!("growerId={g}&status=resolved")).await;
    assert_eq!(resolved["meta"]["total"], 1);
    assert_eq!(resolved["data"][0]["id"], id);
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&status=acknowledged")).await["meta"]["total"], 0);
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&severity=critical")).await["meta"]["total"], 2);
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&severity=info")).await["meta"]["total"], 0);
    let by_device = list_alerts(&app, &gh.owner, &format!("growerId={g}&deviceId={}", dev.id)).await;
    assert_eq!(by_device["meta"]["total"], 2);
    let other_device = list_alerts(&app, &gh.owner, &format!("growerId={g}&deviceId={}", Uuid::now_v7())).await;
    assert_eq!(other_device["meta"]["total"], 0);
    let bad = get_authed(&app, &format!("/api/v1/alerts?growerId={g}&status=open"), &gh.owner.access).await;
    assert_eq!(detail_fields(&assert_error(bad, 400, "/api/v1/alerts").await), ["status"]);
    let bad = get_authed(&app, &format!("/api/v1/alerts?growerId={g}&severity=urgent"), &gh.owner.access).await;
    assert_eq!(detail_fields(&assert_error(bad, 400, "/api/v1/alerts").await), ["severity"]);
}

// ---------------------------------------------------------------------------------------------
// Tenancy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn growers_reach_only_their_own_alerts_and_rules() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let other = greenhouse_by(&app, &gh.admin).await;
    let outsider = &other.owner;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "mine").await;
    let theirs = create_device(&app, &other.owner, other.grower_id, "theirs").await;
    let rule_body = |g: Uuid| json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0, "severity": "warning"});
    let rule = new_rule(&app, &gh.owner, rule_body(gh.grower_id)).await;
    new_rule(&app, &other.owner, rule_body(other.grower_id)).await;
    let t0 = base();
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, t0)]).await;
    send(&app, &other.owner, vec![reading(theirs.id, "temp", 32.0, t0)]).await;
    let id = alerts_of(&app, &gh).await[0]["id"].clone();
    let their_alert = alerts_of(&app, &other).await[0]["id"].clone();

    // Another grower's owner: everything of this grower answers 404.
    let path = alert_path(&id);
    assert_error(get_authed(&app, &path, &outsider.access).await, 404, &path).await;
    for action in ["ack", "resolve"] {
        let p = format!("{path}/{action}");
        assert_error(alert_action(&app, outsider, &id, action).await, 404, &p).await;
    }
    let rp = rule_path(&rule["id"]);
    assert_error(patch_rule(&app, outsider, &rule["id"], json!({"enabled": false})).await, 404, &rp).await;
    let res = authed(&app, Method::DELETE, &rp, &outsider.access).send().await.unwrap();
    assert_error(res, 404, &rp).await;
    let res = get_authed(&app, &format!("/api/v1/alerts?growerId={}", gh.grower_id), &outsider.access).await;
    assert_error(res, 404, "/api/v1/alerts").await;
    let res = get_authed(&app, &format!("/api/v1/alert-rules?growerId={}", gh.grower_id), &outsider.access).await;
    assert_error(res, 404, rules_path()).await;
    assert_error(post_rule(&app, outsider, &rule_body(gh.grower_id)).await, 404, rules_path()).await;
    // Nothing changed on the way.
    let a = get_alert(&app, &gh.owner, &id).await;
    assert_eq!(a["status"], "active", "{a}");
    let rules = json_of(get_authed(&app, rules_path(), &gh.owner.access).await, 200).await;
    assert_eq!(rules["meta"]["total"], 1);
    assert_eq!(rules["data"][0]["enabled"], true);

    // Their own lists hold only their grower's alerts and rules.
    let mine = list_alerts(&app, outsider, "").await;
    assert_eq!(mine["meta"]["total"], 1, "{mine}");
    assert_eq!(mine["data"][0]["id"], their_alert);
    let mine = json_of(get_authed(&app, rules_path(), &outsider.access).await, 200).await;
    assert_eq!(mine["meta"]["total"], 1, "{mine}");
    assert_eq!(mine["data"][0]["growerId"], other.grower_id.to_string());
    // ADMIN sees both.
    assert_eq!(list_alerts(&app, &gh.admin, "").await["meta"]["total"], 2);
    assert_eq!(get_alert(&app, &gh.admin, &id).await["id"], id);

    // Customers and vendors have no greenhouse access at all: 403.
    let customer = register(&app, "customer").await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;
    for who in [&customer, &vendor] {
        assert_error(get_authed(&app, "/api/v1/alerts", &who.access).await, 403, "/api/v1/alerts").await;
        let q = format!("/api/v1/alerts?growerId={}", gh.grower_id);
        assert_error(get_authed(&app, &q, &who.access).await, 403, "/api/v1/alerts").await;
        assert_error(get_authed(&app, &path, &who.access).await, 403, &path).await;
        assert_error(alert_action(&app, who, &id, "ack").await, 403, &format!("{path}/ack")).await;
        assert_error(get_authed(&app, rules_path(), &who.access).await, 403, rules_path()).await;
        assert_error(post_rule(&app, who, &rule_body(gh.grower_id)).await, 403, rules_path()).await;
        let res = authed(&app, Method::DELETE, &rp, &who.access).send().await.unwrap();
        assert_error(res, 403, &rp).await;
    }
    assert_eq!(get_alert(&app, &gh.owner, &id).await["status"], "active");

    // A MEMBER (not owner) of the grower may read and acknowledge.
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.owner, gh.grower_id, member.id, "MEMBER").await, 201).await;
    assert_eq!(get_alert(&app, &member, &id).await["id"], id);
    let acked = json_of(alert_action(&app, &member, &id, "ack").await, 200).await;
    assert_eq!(acked["status"], "acknowledged");
    // ...but still not another grower's.
    let p = alert_path(&their_alert);
    assert_error(alert_action(&app, &member, &their_alert, "ack").await, 404, &format!("{p}/ack")).await;
}
