//! Tenancy: every route that names another grower's resources answers 404 (403 for a telemetry
//! batch) and changes nothing there; customers and vendors get 403 everywhere, and no token 401.

use chrono::{SubsecRound, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, audit_rows, json_of, register, send, send_json, user_with_role},
    assert_error, distinct_detail_fields,
    greenhouse::{
        add_member, as_device, bearer, create_device, device_auth, greenhouse, greenhouse_by, post_batch, reading,
    },
    ids, spawn_app,
};

use super::{bare, create_chamber, device_get, read};

/// Every person-facing route that names one grower's resources (`grower`, its `chamber`,
/// `device` and `owner`), with a body that would change something if it were allowed.
/// `outsider` is the user who would be made a member.
fn routes_into(
    grower: Uuid,
    chamber: Uuid,
    device: Uuid,
    owner: Uuid,
    outsider: Uuid,
) -> Vec<(Method, String, Option<Value>)> {
    let g = format!("/api/v1/growers/{grower}");
    let d = format!("/api/v1/devices/{device}");
    vec![
        (Method::GET, g.clone(), None),
        (Method::PATCH, g.clone(), Some(json!({ "name": "Taken over" }))),
        (Method::GET, format!("{g}/members"), None),
        (Method::POST, format!("{g}/members"), Some(json!({ "userId": outsider, "role": "OWNER" }))),
        (Method::PATCH, format!("{g}/members/{owner}"), Some(json!({ "role": "MEMBER" }))),
        (Method::DELETE, format!("{g}/members/{owner}"), None),
        (Method::GET, format!("{g}/chambers"), None),
        (Method::POST, format!("{g}/chambers"), Some(json!({ "name": "Planted" }))),
        (Method::PATCH, format!("{g}/chambers/{chamber}"), Some(json!({ "name": "Renamed" }))),
        (Method::DELETE, format!("{g}/chambers/{chamber}"), None),
        (Method::POST, "/api/v1/devices".into(), Some(json!({ "growerId": grower, "name": "Intruder" }))),
        (Method::GET, format!("/api/v1/devices?growerId={grower}"), None),
        (Method::GET, d.clone(), None),
        (Method::PATCH, d.clone(), Some(json!({ "name": "Renamed", "metadata": { "owned": true } }))),
        (Method::DELETE, d.clone(), None),
        (Method::POST, format!("{d}/rotate-token"), None),
        (Method::GET, format!("{d}/state"), None),
        (Method::PUT, format!("{d}/desired"), Some(json!({ "fan": "off" }))),
        (Method::PUT, format!("{d}/desired"), Some(json!({ "fan": "off", "ifVersion": 1 }))),
        (Method::GET, format!("{d}/telemetry?metric=t"), None),
        (Method::GET, format!("{d}/telemetry?metric=t&bucket=1h&agg=max"), None),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tenancy
// ---------------------------------------------------------------------------------------------

/// Everything about grower B that its own people (here: an admin) can read.
async fn snapshot(app: &TestApp, admin: &Account, grower: Uuid, device: Uuid) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        format!("/api/v1/growers/{grower}"),
        format!("/api/v1/growers/{grower}/members"),
        format!("/api/v1/growers/{grower}/chambers"),
        format!("/api/v1/devices?growerId={grower}"),
        format!("/api/v1/devices/{device}"),
        format!("/api/v1/devices/{device}/state"),
    ] {
        out.push(read(app, &path, &admin.access).await);
    }
    let history = read(app, &format!("/api/v1/devices/{device}/telemetry?metric=t"), &admin.access).await;
    out.push(history["points"].clone());
    out
}

#[tokio::test]
async fn another_growers_resources_answer_404_on_every_route_and_stay_unchanged() {
    let app = spawn_app().await;
    let a = greenhouse(&app).await;
    let b = greenhouse_by(&app, &a.admin).await;
    let chamber_a = create_chamber(&app, &a.owner, a.grower_id, "Room A").await;
    let chamber_b = create_chamber(&app, &b.owner, b.grower_id, "Room B").await;
    let dev_a = create_device(&app, &a.owner, a.grower_id, "sensor A").await;
    let dev_b = create_device(&app, &b.owner, b.grower_id, "sensor B").await;

    // B has a life of its own: a reading, a desired state, a chamber for its device.
    let now = Utc::now().trunc_subsecs(0);
    json_of(post_batch(&app, &device_auth(&dev_b), &json!([reading(dev_b.id, "t", 21.5, now)])).await, 202).await;
    let desired_path = format!("/api/v1/devices/{}/desired", dev_b.id);
    let res = send_json(&app, Method::PUT, &desired_path, &b.owner.access, json!({ "fan": "on" })).await;
    assert_eq!(json_of(res, 200).await["desiredVersion"], 1);
    let res = send_json(
        &app,
        Method::PATCH,
        &format!("/api/v1/devices/{}", dev_b.id),
        &b.owner.access,
        json!({ "chamberId": chamber_b }),
    )
    .await;
    json_of(res, 200).await;
    let before = snapshot(&app, &a.admin, b.grower_id, dev_b.id).await;
    assert_eq!(before[5]["reported"]["t"]["value"], 21.5, "{}", before[5]);
    assert_eq!(before[6].as_array().unwrap().len(), 1, "{}", before[6]);

    // A's owner against B: 404 everywhere, with the very same answer as for ids that do not
    // exist at all, so B's ids cannot even be probed.
    let attacker = &a.owner;
    let against_b = routes_into(b.grower_id, chamber_b, dev_b.id, b.owner.id, attacker.id);
    let against_nothing = routes_into(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), attacker.id);
    // B's chamber through A's own grower, and B's chamber for A's own device.
    let mut cross: Vec<(Method, String, Option<Value>, u16)> = Vec::new();
    for chamber in [chamber_b, Uuid::now_v7()] {
        let g = format!("/api/v1/growers/{}", a.grower_id);
        cross.push((Method::PATCH, format!("{g}/chambers/{chamber}"), Some(json!({ "name": "Renamed" })), 404));
        cross.push((Method::DELETE, format!("{g}/chambers/{chamber}"), None, 404));
        let device = json!({ "growerId": a.grower_id, "chamberId": chamber, "name": "Sneaky" });
        cross.push((Method::POST, "/api/v1/devices".into(), Some(device), 422));
        let patch = json!({ "chamberId": chamber });
        cross.push((Method::PATCH, format!("/api/v1/devices/{}", dev_a.id), Some(patch), 422));
    }
    for ((method, path, body), (_, nothing_path, nothing_body)) in against_b.iter().zip(&against_nothing) {
        let res = send(&app, method.clone(), path, &attacker.access, body.as_ref()).await;
        let err = assert_error(res, 404, bare(path)).await;
        let res = send(&app, method.clone(), nothing_path, &attacker.access, nothing_body.as_ref()).await;
        let unknown = assert_error(res, 404, bare(nothing_path)).await;
        assert_eq!(err["message"], unknown["message"], "{method} {path}: B's resource is told apart from nothing");
    }
    let mut messages = Vec::new();
    for (method, path, body, status) in &cross {
        let res = send(&app, method.clone(), path, &attacker.access, body.as_ref()).await;
        messages.push(assert_error(res, *status, bare(path)).await["message"].clone());
    }
    assert_eq!(messages[..4], messages[4..], "B's chamber is told apart from a chamber that does not exist");

    // Telemetry for B's device: 403 for A's owner and for A's device, and nothing is stored,
    // not even the reading for A's own device in the same batch.
    let later = now + chrono::Duration::seconds(1);
    let batch = json!([reading(dev_a.id, "t", 1.0, later), reading(dev_b.id, "t", 99.0, later)]);
    let err = assert_error(post_batch(&app, &bearer(attacker), &batch).await, 403, "/api/v1/telemetry/batch").await;
    assert!(distinct_detail_fields(&err).contains(&"items[1].deviceId".to_string()), "{err}");
    assert!(!distinct_detail_fields(&err).contains(&"items[0].deviceId".to_string()), "{err}");
    let only_b = json!([reading(dev_b.id, "t", 99.0, later)]);
    assert_error(post_batch(&app, &device_auth(&dev_a), &only_b).await, 403, "/api/v1/telemetry/batch").await;
    let mine = read(&app, &format!("/api/v1/devices/{}/telemetry?metric=t", dev_a.id), &attacker.access).await;
    assert_eq!(mine["points"], json!([]), "a refused batch stores nothing: {mine}");

    // A's lists never show B.
    let growers = read(&app, "/api/v1/growers", &attacker.access).await;
    assert_eq!(ids(&growers), vec![a.grower_id.to_string()]);
    let devices = read(&app, "/api/v1/devices", &attacker.access).await;
    assert_eq!(ids(&devices), vec![dev_a.id.to_string()]);
    assert_eq!(devices["meta"]["total"], 1);
    let devices = read(&app, &format!("/api/v1/devices?chamberId={chamber_b}"), &attacker.access).await;
    assert_eq!(devices["data"], json!([]), "{devices}");
    assert_eq!(devices["meta"]["total"], 0);
    let rooms = read(&app, &format!("/api/v1/growers/{}/chambers", a.grower_id), &attacker.access).await;
    assert_eq!(ids(&rooms), vec![chamber_a.to_string()]);
    let mine = read(&app, &format!("/api/v1/devices/{}", dev_a.id), &attacker.access).await;
    assert!(mine["chamberId"].is_null(), "A's device was not put into B's chamber: {mine}");

    // Nothing changed in B: same reads, same members (the attacker is not one), same token.
    let after = snapshot(&app, &a.admin, b.grower_id, dev_b.id).await;
    assert_eq!(before, after);
    let members = &after[1]["data"];
    assert!(members.as_array().unwrap().iter().all(|m| m["userId"] != attacker.id.to_string()), "{members}");
    let desired = json_of(device_get(&app, "/api/v1/devices/me/desired", &dev_b.token).await, 200).await;
    assert_eq!(desired, json!({ "desired": { "fan": "on" }, "desiredVersion": 1 }));
    assert_eq!(read(&app, &format!("/api/v1/devices/{}", dev_b.id), &b.owner.access).await["name"], "sensor B");
    // And the attacker left no trace on B in the audit log.
    let b_ids = [b.grower_id.to_string(), dev_b.id.to_string()];
    for action in [
        "grower.updated",
        "grower.member_added",
        "grower.member_updated",
        "grower.member_removed",
        "device.created",
        "device.deleted",
        "device.token_rotated",
    ] {
        for row in audit_rows(&app, action).await {
            let on_b = row.resource_id.as_deref().is_some_and(|r| b_ids.contains(&r.to_string()));
            assert!(!(on_b && row.user_id == Some(attacker.id)), "{row:?}");
        }
    }
    let changes = audit_rows(&app, "device.desired_changed").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].user_id, Some(b.owner.id));
}

#[tokio::test]
async fn customers_and_vendors_get_403_everywhere_and_no_token_gets_401() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let chamber = create_chamber(&app, &g.owner, g.grower_id, "Room").await;
    let dev = create_device(&app, &g.owner, g.grower_id, "sensor").await;
    let customer = register(&app, "customer").await;
    let vendor = user_with_role(&app, "vendor", "VENDOR").await;

    let mut routes = routes_into(g.grower_id, chamber, dev.id, g.owner.id, customer.id);
    routes.push((Method::GET, "/api/v1/growers".into(), None));
    routes.push((Method::POST, "/api/v1/growers".into(), Some(json!({ "name": "Mine" }))));
    routes.push((Method::GET, "/api/v1/devices".into(), None));
    routes.push((Method::GET, "/api/v1/devices?status=online".into(), None));
    routes.push((Method::POST, "/api/v1/telemetry/batch".into(), Some(json!([reading(dev.id, "t", 1.0, Utc::now())]))));
    let before = read(&app, &format!("/api/v1/devices/{}", dev.id), &g.owner.access).await;

    for caller in [&customer, &vendor] {
        for (method, path, body) in &routes {
            let res = send(&app, method.clone(), path, &caller.access, body.as_ref()).await;
            let err = assert_error(res, 403, bare(path)).await;
            assert_eq!(err["error"], "Forbidden", "{method} {path}: {err}");
        }
        // Not even their own id into a grower: 403 before anything else.
        let res = add_member(&app, caller, g.grower_id, caller.id, "OWNER").await;
        assert_error(res, 403, &format!("/api/v1/growers/{}/members", g.grower_id)).await;
    }

    // No credentials, or a device token on a person's route: 401.
    for (method, path, body) in &routes {
        let mut req = app.client.request(method.clone(), app.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        assert_error(req.send().await.unwrap(), 401, bare(path)).await;
        if path.ends_with("/telemetry/batch") {
            continue; // a device may post its own readings there
        }
        let mut req = as_device(&app, method.clone(), path, &dev.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        assert_error(req.send().await.unwrap(), 401, bare(path)).await;
    }

    // Nothing changed, the token still works, and the admin still sees one grower, one device.
    let after = read(&app, &format!("/api/v1/devices/{}", dev.id), &g.owner.access).await;
    assert_eq!(before["name"], after["name"]);
    assert_eq!(before["updatedAt"], after["updatedAt"]);
    assert_eq!(before["desiredVersion"], after["desiredVersion"]);
    json_of(device_get(&app, "/api/v1/devices/me", &dev.token).await, 200).await;
    assert_eq!(read(&app, "/api/v1/growers", &g.admin.access).await["meta"]["total"], 1);
    assert_eq!(read(&app, "/api/v1/devices", &g.admin.access).await["meta"]["total"], 1);
    let members = read(&app, &format!("/api/v1/growers/{}/members", g.grower_id), &g.admin.access).await;
    assert_eq!(members["meta"]["total"], 1, "{members}");
}
