//! Rules: validation naming each bad field, create, list and delete (which resolves open
//! alerts), and patch (disabling resolves the open alert).

use chrono::Duration;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    accounts::{audit_rows, authed, get_authed, json_of, user_with_role},
    alerts::{alerts_of, list_alerts, new_rule, post_rule, rules_path},
    assert_error, detail_fields,
    greenhouse::{add_member, create_device, greenhouse, greenhouse_by, reading},
};

use super::{alert_events, app, base, changes, get_alert, list_rules, patch_rule, rule_path, send, watch};

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rule_validation_names_each_bad_field() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let other = greenhouse_by(&app, &gh.admin).await;
    let foreign = create_device(&app, &other.owner, other.grower_id, "foreign").await;
    let g = gh.grower_id;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "threshold": 1.0, "severity": "info"}),
            vec!["op"],
        ),
        (json!({"growerId": g, "metric": "temp", "kind": "rate", "severity": "info"}), vec!["op"]),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "severity": "info"}),
            vec!["threshold"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "outside", "severity": "info"}),
            vec!["low"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "outside", "low": 1.0, "severity": "info"}),
            vec!["low"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "outside", "low": 5.0, "high": 1.0,
                   "severity": "info"}),
            vec!["low"],
        ),
        (json!({"growerId": g, "metric": "temp", "kind": "stale", "severity": "info"}), vec!["forSeconds"]),
        (
            json!({"growerId": g, "metric": "temp", "kind": "stale", "forSeconds": 0, "severity": "info"}),
            vec!["forSeconds"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "forSeconds": -1,
                   "severity": "info"}),
            vec!["forSeconds"],
        ),
        (
            json!({"growerId": g, "metric": "Temp!", "kind": "threshold", "op": "gt", "threshold": 1.0, "severity": "info"}),
            vec!["metric"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "severity": "urgent"}),
            vec!["severity"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "alpha": 0.2,
                   "severity": "info"}),
            vec!["alpha"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0,
                   "warmupSamples": 10, "severity": "info"}),
            vec!["warmupSamples"],
        ),
        (json!({"growerId": g, "metric": "temp", "kind": "anomaly", "alpha": 1.5, "severity": "info"}), vec!["alpha"]),
        (json!({"growerId": g, "metric": "temp", "kind": "anomaly", "alpha": 0.0, "severity": "info"}), vec!["alpha"]),
        (
            json!({"growerId": g, "metric": "temp", "kind": "anomaly", "threshold": 0.0, "severity": "info"}),
            vec!["threshold"],
        ),
        (
            json!({"growerId": g, "metric": "temp", "kind": "anomaly", "warmupSamples": 1, "severity": "info"}),
            vec!["warmupSamples"],
        ),
        (
            json!({"growerId": g, "name": "  ", "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0,
                   "severity": "info"}),
            vec!["name"],
        ),
        (
            json!({"growerId": g, "deviceId": foreign.id, "metric": "temp", "kind": "threshold", "op": "gt",
                   "threshold": 1.0, "severity": "info"}),
            vec!["deviceId"],
        ),
        // Every problem is named, not just the first.
        (
            json!({"growerId": g, "metric": "BAD", "kind": "threshold", "severity": "loud"}),
            vec!["metric", "severity", "op"],
        ),
    ];
    for (body, fields) in cases {
        let err = assert_error(post_rule(&app, &gh.owner, &body).await, 400, rules_path()).await;
        let mut got = detail_fields(&err);
        got.sort();
        let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "for {body}: {err}");
    }
    let none = json_of(get_authed(&app, &format!("{}?growerId={g}", rules_path()), &gh.owner.access).await, 200).await;
    assert_eq!(none["meta"]["total"], 0, "nothing was stored: {none}");

    // A PATCH is validated as a whole: removing the op of a threshold rule names `op`.
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0, "severity": "info"}),
    )
    .await;
    let rp = rule_path(&rule["id"]);
    let err = assert_error(patch_rule(&app, &gh.owner, &rule["id"], json!({"op": null})).await, 400, &rp).await;
    assert_eq!(detail_fields(&err), ["op"]);
    let err = assert_error(patch_rule(&app, &gh.owner, &rule["id"], json!({"alpha": 0.3})).await, 400, &rp).await;
    assert_eq!(detail_fields(&err), ["alpha"]);
    let res = patch_rule(&app, &gh.owner, &rule["id"], json!({"deviceId": foreign.id})).await;
    assert_eq!(detail_fields(&assert_error(res, 400, &rp).await), ["deviceId"]);
}

#[tokio::test]
async fn rule_crud_lists_and_delete_resolves_open_alerts() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let other = greenhouse_by(&app, &gh.admin).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.owner, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "one").await;
    let dev2 = create_device(&app, &gh.owner, gh.grower_id, "two").await;
    let g = gh.grower_id;

    // A member may create rules; defaults are filled in.
    let rule = new_rule(
        &app,
        &member,
        json!({"growerId": g, "deviceId": dev.id, "name": " Hot ", "metric": "temp", "kind": "threshold", "op": "gt",
               "threshold": 30.0, "severity": "warning"}),
    )
    .await;
    assert!(rule["id"].is_string());
    assert_eq!(rule["growerId"], g.to_string());
    assert_eq!(rule["deviceId"], dev.id.to_string());
    assert_eq!(rule["name"], "Hot");
    assert_eq!(rule["kind"], "threshold");
    assert_eq!(rule["op"], "gt");
    assert_eq!(rule["threshold"], 30.0);
    assert_eq!(rule["forSeconds"], 0);
    assert_eq!(rule["enabled"], true);
    assert_eq!(rule["autoResolve"], true);
    assert!(audit_rows(&app, "alert_rule.create").await.iter().any(|r| r.user_id == Some(member.id)));
    let all_devices = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "metric": "humidity", "kind": "threshold", "op": "lt", "threshold": 10.0, "severity": "info"}),
    )
    .await;
    let only_dev2 = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "deviceId": dev2.id, "metric": "temp", "kind": "stale", "forSeconds": 600, "severity": "info"}),
    )
    .await;
    let elsewhere = new_rule(
        &app,
        &other.owner,
        json!({"growerId": other.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 1.0,
               "severity": "info"}),
    )
    .await;

    // Lists: by grower (oldest first), and by device (its rules and the grower-wide ones).
    let ids = |page: &Value| page["data"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    let mine = list_rules(&app, &gh.admin, &format!("{}?growerId={g}", rules_path())).await;
    assert_eq!(mine["meta"]["total"], 3, "{mine}");
    assert_eq!(ids(&mine), [rule["id"].clone(), all_devices["id"].clone(), only_dev2["id"].clone()]);
    let theirs = list_rules(&app, &gh.admin, &format!("{}?growerId={}", rules_path(), other.grower_id)).await;
    assert_eq!(ids(&theirs), [elsewhere["id"].clone()]);
    let for_dev = list_rules(&app, &member, &format!("{}?growerId={g}&deviceId={}", rules_path(), dev.id)).await;
    assert_eq!(ids(&for_dev), [rule["id"].clone(), all_devices["id"].clone()]);
    let every = list_rules(&app, &gh.admin, rules_path()).await;
    assert_eq!(every["meta"]["total"], 4, "ADMIN without a filter sees every grower's: {every}");

    // An open alert; deleting the rule resolves it.
    let mut rx = watch(&app, g);
    let t0 = base();
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 31.0, t0)]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let open = list[0]["id"].clone();
    let rp = rule_path(&rule["id"]);
    let res = authed(&app, Method::DELETE, &rp, &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let a = get_alert(&app, &gh.owner, &open).await;
    assert_eq!(a["status"], "resolved", "deleting resolves the open alert: {a}");
    assert_eq!(a["resolvedBy"], gh.owner.id.to_string());
    app.run_jobs().await;
    assert_eq!(changes(&alert_events(&mut rx, g)), ["created", "resolved"]);
    assert!(audit_rows(&app, "alert_rule.delete").await.iter().any(|r| r.user_id == Some(gh.owner.id)));

    // Gone: 404 for DELETE and PATCH, absent from the list, and it evaluates nothing.
    let res = authed(&app, Method::DELETE, &rp, &gh.owner.access).send().await.unwrap();
    assert_error(res, 404, &rp).await;
    assert_error(patch_rule(&app, &gh.owner, &rule["id"], json!({"enabled": true})).await, 404, &rp).await;
    let mine = list_rules(&app, &gh.admin, &format!("{}?growerId={g}", rules_path())).await;
    assert_eq!(ids(&mine), [all_devices["id"].clone(), only_dev2["id"].clone()]);
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 50.0, t0 + Duration::seconds(1))]).await;
    assert_eq!(list_alerts(&app, &gh.owner, &format!("growerId={g}&status=active")).await["meta"]["total"], 0);
    assert!(alert_events(&mut rx, g).is_empty());
}

#[tokio::test]
async fn rule_patch_is_stored_and_disabling_resolves_the_open_alert() {
    let app = app().await;
    let gh = greenhouse(&app).await;
    let member = user_with_role(&app, "member", "GROWER").await;
    json_of(add_member(&app, &gh.owner, gh.grower_id, member.id, "MEMBER").await, 201).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "one").await;
    let g = gh.grower_id;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": g, "name": "Hot", "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0,
               "severity": "warning"}),
    )
    .await;
    let stored = |page: Value| page["data"][0].clone();
    let rules_of_g = format!("{}?growerId={g}", rules_path());

    // PATCH changes what is given, and the change is stored (not only echoed).
    let patched =
        json_of(patch_rule(&app, &member, &rule["id"], json!({"threshold": 25.0, "severity": "critical"})).await, 200)
            .await;
    assert_eq!(patched["threshold"], 25.0);
    assert_eq!(patched["severity"], "critical");
    assert_eq!(patched["name"], "Hot", "absent fields stay");
    assert_eq!(patched["op"], "gt");
    let now = stored(list_rules(&app, &gh.owner, &rules_of_g).await);
    assert_eq!(now["threshold"], 25.0, "the PATCH was stored: {now}");
    assert_eq!(now["severity"], "critical", "the PATCH was stored: {now}");
    assert_eq!(now["name"], "Hot");

    // The rule evaluates as patched: 26 is above 25 (not above 30), at the new severity.
    let mut rx = watch(&app, g);
    let t0 = base();
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 26.0, t0)]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "the patched threshold applies: {list:?}");
    assert_eq!(list[0]["severity"], "critical");
    let first = list[0]["id"].clone();

    // Disabling resolves the open alert, and is stored: the rule no longer evaluates.
    let off = json_of(patch_rule(&app, &member, &rule["id"], json!({"enabled": false})).await, 200).await;
    assert_eq!(off["enabled"], false);
    let a = get_alert(&app, &gh.owner, &first).await;
    assert_eq!(a["status"], "resolved", "disabling resolves the open alert: {a}");
    assert_eq!(a["resolvedBy"], member.id.to_string());
    app.run_jobs().await;
    assert_eq!(changes(&alert_events(&mut rx, g)), ["created", "resolved"]);
    assert_eq!(stored(list_rules(&app, &gh.owner, &rules_of_g).await)["enabled"], false, "disabled is stored");
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 40.0, t0 + Duration::seconds(1))]).await;
    let list = alerts_of(&app, &gh).await;
    assert_eq!(list.len(), 1, "a disabled rule opens no alert: {list:?}");
    assert!(alert_events(&mut rx, g).is_empty());

    // Enabled again, it fires again: a new alert.
    json_of(patch_rule(&app, &gh.owner, &rule["id"], json!({"enabled": true})).await, 200).await;
    send(&app, &gh.owner, vec![reading(dev.id, "temp", 41.0, t0 + Duration::seconds(2))]).await;
    let active = list_alerts(&app, &gh.owner, &format!("growerId={g}&status=active")).await;
    assert_eq!(active["meta"]["total"], 1, "{active}");
    assert_ne!(active["data"][0]["id"], first);
    assert_eq!(active["data"][0]["value"], 41.0);
    assert!(audit_rows(&app, "alert_rule.update").await.iter().any(|r| r.user_id == Some(member.id)));
}
