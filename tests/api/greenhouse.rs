//! CONTRACT.md "Growers, devices, telemetry" (the greenhouse part): growers and their members
//! and chambers, device provisioning with one-time tokens, rotation and soft deletion,
//! presence (`online`/`offline`), desired/reported state with its versions, the audit rows of
//! these changes, and above all tenancy: every route tried across two growers answers 404 for
//! the other grower's resources (403 for a telemetry batch), and nothing changes there.

use std::collections::HashSet;

use axum::Router;
use chrono::{SubsecRound, Utc};
use mash::greenhouse::entity::device as device_row;
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{
        Account, LOCALHOST, audit_rows, authed, get_authed, json_of, register, send, send_json, user_with_role,
    },
    assert_error, distinct_detail_fields,
    greenhouse::{
        Device, add_member, as_device, bearer, create_device, create_grower, device_auth, greenhouse, greenhouse_by,
        post_batch, reading, report,
    },
    ids, spawn_app, spawn_app_with, ts_of,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `GET` as a person, 200 asserted.
async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    json_of(get_authed(app, path, token).await, 200).await
}

async fn device_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    as_device(app, Method::GET, path, token).send().await.unwrap()
}

async fn create_chamber(app: &TestApp, by: &Account, grower_id: Uuid, name: &str) -> Uuid {
    let path = format!("/api/v1/growers/{grower_id}/chambers");
    let body = json_of(send_json(app, Method::POST, &path, &by.access, json!({ "name": name })).await, 201).await;
    assert_eq!(body["growerId"], grower_id.to_string(), "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

fn set_of(ids: &[&Uuid]) -> HashSet<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

/// A token never shows up in a body other than the one that issues it.
fn assert_no_token(body: &Value, token: &str) {
    let text = body.to_string();
    assert!(!text.contains(token), "the device token appears in {text}");
    let secret = token.split_once('.').unwrap().1;
    assert!(!text.contains(secret), "the token's secret appears in {text}");
    for key in ["deviceToken", "tokenHash", "tokenId", "token_hash", "token_id"] {
        assert!(!text.contains(&format!("\"{key}\"")), "key {key} in {text}");
    }
}

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

fn bare(path: &str) -> &str {
    path.split('?').next().unwrap()
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

// ---------------------------------------------------------------------------------------------
// Growers and members
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admins_create_growers_and_growers_see_only_their_own_with_their_role() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let admin = &g.admin;

    // Only an admin creates growers.
    let res = send_json(&app, Method::POST, "/api/v1/growers", &g.owner.access, json!({ "name": "Mine" })).await;
    assert_error(res, 403, "/api/v1/growers").await;
    for bad in [json!({ "name": "" }), json!({ "name": "   " }), json!({ "name": "x".repeat(201) }), json!({})] {
        let res = send_json(&app, Method::POST, "/api/v1/growers", &admin.access, bad.clone()).await;
        let err = assert_error(res, 400, "/api/v1/growers").await;
        if bad.get("name").is_some() {
            assert_eq!(distinct_detail_fields(&err), vec!["name"], "{bad}: {err}");
        }
    }
    let res = send_json(&app, Method::POST, "/api/v1/growers", &admin.access, json!({ "name": "  Zeta Farms " })).await;
    let zeta = json_of(res, 201).await;
    assert_eq!(zeta["name"], "Zeta Farms");
    assert!(zeta.get("myRole").is_none(), "an admin outside the grower has no role in it: {zeta}");
    Uuid::parse_str(zeta["id"].as_str().unwrap()).unwrap();
    ts_of(&zeta["createdAt"]);
    let zeta_id = zeta["id"].as_str().unwrap().to_string();
    let alpha = create_grower(&app, admin, "Alpha Farms").await;

    // The admin sees all three, by name; the owner sees only theirs, with their role.
    let all = read(&app, "/api/v1/growers?limit=2", &admin.access).await;
    assert_eq!(all["meta"], json!({ "page": 1, "limit": 2, "total": 3, "totalPages": 2, "hasMore": true }));
    assert_eq!(all["data"][0]["id"], alpha.to_string());
    let page2 = read(&app, "/api/v1/growers?limit=2&page=2", &admin.access).await;
    assert_eq!(ids(&page2), vec![zeta_id.clone()]);
    assert_eq!(page2["meta"]["hasMore"], false);

    let mine = read(&app, "/api/v1/growers", &g.owner.access).await;
    assert_eq!(ids(&mine), vec![g.grower_id.to_string()]);
    assert_eq!(mine["data"][0]["myRole"], "OWNER");
    assert_eq!(mine["meta"]["total"], 1);
    let one = read(&app, &format!("/api/v1/growers/{}", g.grower_id), &g.owner.access).await;
    assert_eq!(one["myRole"], "OWNER");
    assert_eq!(one["id"], g.grower_id.to_string());
    assert_error(
        get_authed(&app, &format!("/api/v1/growers/{zeta_id}"), &g.owner.access).await,
        404,
        &format!("/api/v1/growers/{zeta_id}"),
    )
    .await;

    // A GROWER in no grower sees an empty list.
    let loner = user_with_role(&app, "loner", "GROWER").await;
    let none = read(&app, "/api/v1/growers", &loner.access).await;
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["meta"]["total"], 0);
    assert_eq!(read(&app, "/api/v1/devices", &loner.access).await["meta"]["total"], 0);

    // Owners rename; the name is validated the same way.
    let path = format!("/api/v1/growers/{}", g.grower_id);
    let res = send_json(&app, Method::PATCH, &path, &g.owner.access, json!({ "name": " Renamed " })).await;
    assert_eq!(json_of(res, 200).await["name"], "Renamed");
    let err =
        assert_error(send_json(&app, Method::PATCH, &path, &g.owner.access, json!({ "name": "" })).await, 400, &path)
            .await;
    assert_eq!(distinct_detail_fields(&err), vec!["name"]);
    assert_eq!(read(&app, &path, &admin.access).await["name"], "Renamed");
    let bad = "/api/v1/growers/not-a-uuid";
    let err = assert_error(get_authed(&app, bad, &g.owner.access).await, 400, bad).await;
    assert_eq!(distinct_detail_fields(&err), vec!["id"], "{err}");

    // grower.created by the admin, for each grower.
    let rows = audit_rows(&app, "grower.created").await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.user_id == Some(admin.id) && r.ip_address.as_deref() == Some(LOCALHOST)));
    let on: HashSet<_> = rows.iter().filter_map(|r| r.resource_id.clone()).collect();
    assert_eq!(on, HashSet::from([g.grower_id.to_string(), zeta_id, alpha.to_string()]));
}

#[tokio::test]
async fn owners_manage_members_members_only_read_and_a_grower_keeps_an_owner() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let (owner, gid) = (&g.owner, g.grower_id);
    let members_path = format!("/api/v1/growers/{gid}/members");
    let member = user_with_role(&app, "member", "GROWER").await;
    let customer = register(&app, "customer").await;

    // Adding: GROWER (or ADMIN) users only, once each, with a valid role.
    let added = json_of(add_member(&app, owner, gid, member.id, "MEMBER").await, 201).await;
    assert_eq!(added["userId"], member.id.to_string());
    assert_eq!(added["growerId"], gid.to_string());
    assert_eq!(added["role"], "MEMBER");
    assert_eq!(added["email"], member.email);
    let err = assert_error(add_member(&app, owner, gid, customer.id, "MEMBER").await, 422, &members_path).await;
    assert!(err["message"].as_str().unwrap().contains("userId"), "{err}");
    assert_error(add_member(&app, owner, gid, Uuid::now_v7(), "MEMBER").await, 422, &members_path).await;
    assert_error(add_member(&app, owner, gid, member.id, "OWNER").await, 409, &members_path).await;
    let err = assert_error(add_member(&app, owner, gid, customer.id, "ADMIN").await, 400, &members_path).await;
    assert_eq!(distinct_detail_fields(&err), vec!["role"], "{err}");
    let res =
        send_json(&app, Method::POST, &members_path, &owner.access, json!({ "userId": "nope", "role": "MEMBER" }))
            .await;
    assert_eq!(distinct_detail_fields(&assert_error(res, 400, &members_path).await), vec!["userId"]);

    let list = read(&app, &members_path, &member.access).await;
    assert_eq!(list["meta"]["total"], 2, "{list}");
    let roles: HashSet<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["userId"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        roles,
        HashSet::from([(owner.id.to_string(), "OWNER".into()), (member.id.to_string(), "MEMBER".into())])
    );

    // A MEMBER reads everything and sets desired state, but manages nothing.
    let dev = create_device(&app, owner, gid, "sensor").await;
    let chamber = create_chamber(&app, owner, gid, "Room").await;
    assert_eq!(read(&app, &format!("/api/v1/growers/{gid}"), &member.access).await["myRole"], "MEMBER");
    assert_eq!(read(&app, "/api/v1/growers", &member.access).await["data"][0]["myRole"], "MEMBER");
    assert_eq!(read(&app, &format!("/api/v1/growers/{gid}/chambers"), &member.access).await["meta"]["total"], 1);
    assert_eq!(ids(&read(&app, "/api/v1/devices", &member.access).await), vec![dev.id.to_string()]);
    read(&app, &format!("/api/v1/devices/{}", dev.id), &member.access).await;
    read(&app, &format!("/api/v1/devices/{}/state", dev.id), &member.access).await;
    read(&app, &format!("/api/v1/devices/{}/telemetry?metric=t", dev.id), &member.access).await;
    let desired = format!("/api/v1/devices/{}/desired", dev.id);
    let res = send_json(&app, Method::PUT, &desired, &member.access, json!({ "fan": "on" })).await;
    assert_eq!(json_of(res, 200).await["desiredVersion"], 1);
    let batch = json!([reading(dev.id, "t", 20.0, Utc::now())]);
    json_of(post_batch(&app, &bearer(&member), &batch).await, 202).await;

    let d = format!("/api/v1/devices/{}", dev.id);
    let forbidden: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PATCH, format!("/api/v1/growers/{gid}"), Some(json!({ "name": "Mine" }))),
        (Method::POST, members_path.clone(), Some(json!({ "userId": customer.id, "role": "MEMBER" }))),
        (Method::PATCH, format!("{members_path}/{}", owner.id), Some(json!({ "role": "MEMBER" }))),
        (Method::PATCH, format!("{members_path}/{}", member.id), Some(json!({ "role": "OWNER" }))),
        (Method::DELETE, format!("{members_path}/{}", owner.id), None),
        (Method::POST, format!("/api/v1/growers/{gid}/chambers"), Some(json!({ "name": "Mine" }))),
        (Method::PATCH, format!("/api/v1/growers/{gid}/chambers/{chamber}"), Some(json!({ "name": "Mine" }))),
        (Method::DELETE, format!("/api/v1/growers/{gid}/chambers/{chamber}"), None),
        (Method::POST, "/api/v1/devices".into(), Some(json!({ "growerId": gid, "name": "Mine" }))),
        (Method::PATCH, d.clone(), Some(json!({ "name": "Mine" }))),
        (Method::DELETE, d.clone(), None),
        (Method::POST, format!("{d}/rotate-token"), None),
    ];
    for (method, path, body) in &forbidden {
        let res = send(&app, method.clone(), path, &member.access, body.as_ref()).await;
        let err = assert_error(res, 403, path).await;
        assert_eq!(err["error"], "Forbidden", "{method} {path}");
    }
    assert_eq!(read(&app, &members_path, &owner.access).await["meta"]["total"], 2);
    assert_eq!(read(&app, &d, &owner.access).await["name"], "sensor");
    json_of(device_get(&app, "/api/v1/devices/me", &dev.token).await, 200).await;

    // The last owner can neither leave nor step down.
    let owner_path = format!("{members_path}/{}", owner.id);
    let res = send_json(&app, Method::PATCH, &owner_path, &owner.access, json!({ "role": "MEMBER" })).await;
    assert_error(res, 422, &owner_path).await;
    assert_error(send(&app, Method::DELETE, &owner_path, &owner.access, None).await, 422, &owner_path).await;
    assert_eq!(read(&app, &format!("/api/v1/growers/{gid}"), &owner.access).await["myRole"], "OWNER");
    let unknown = format!("{members_path}/{}", customer.id);
    assert_error(
        send_json(&app, Method::PATCH, &unknown, &owner.access, json!({ "role": "OWNER" })).await,
        404,
        &unknown,
    )
    .await;
    assert_error(send(&app, Method::DELETE, &unknown, &owner.access, None).await, 404, &unknown).await;

    // With a second owner, the first may step down; then they manage nothing any more.
    let member_path = format!("{members_path}/{}", member.id);
    let res = send_json(&app, Method::PATCH, &member_path, &owner.access, json!({ "role": "OWNER" })).await;
    assert_eq!(json_of(res, 200).await["role"], "OWNER");
    let res = send_json(&app, Method::PATCH, &owner_path, &owner.access, json!({ "role": "MEMBER" })).await;
    assert_eq!(json_of(res, 200).await["role"], "MEMBER");
    let chambers = format!("/api/v1/growers/{gid}/chambers");
    let res = send_json(&app, Method::POST, &chambers, &owner.access, json!({ "name": "Late" })).await;
    assert_error(res, 403, &chambers).await;

    // The new owner removes the old one, who then sees nothing of the grower.
    assert_eq!(send(&app, Method::DELETE, &owner_path, &member.access, None).await.status(), 204);
    let grower_path = format!("/api/v1/growers/{gid}");
    assert_error(get_authed(&app, &grower_path, &owner.access).await, 404, &grower_path).await;
    assert_error(get_authed(&app, &d, &owner.access).await, 404, &d).await;
    assert_eq!(read(&app, "/api/v1/growers", &owner.access).await["meta"]["total"], 0);
    assert_eq!(read(&app, "/api/v1/devices", &owner.access).await["meta"]["total"], 0);
    assert_error(send(&app, Method::DELETE, &member_path, &member.access, None).await, 422, &member_path).await;

    // An admin may do what owners may not: remove the last owner; and admins can be members.
    assert_eq!(send(&app, Method::DELETE, &member_path, &g.admin.access, None).await.status(), 204);
    assert_eq!(read(&app, &members_path, &g.admin.access).await["meta"]["total"], 0);
    json_of(add_member(&app, &g.admin, gid, g.admin.id, "OWNER").await, 201).await;
    assert_eq!(read(&app, &grower_path, &g.admin.access).await["myRole"], "OWNER");

    // grower.member_added: the owner (by the admin), the member (by the owner), the admin.
    let rows = audit_rows(&app, "grower.member_added").await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let by_owner: Vec<_> = rows.iter().filter(|r| r.user_id == Some(owner.id)).collect();
    assert_eq!(by_owner.len(), 1, "{rows:?}");
    assert_eq!(by_owner[0].resource_id.as_deref(), Some(gid.to_string().as_str()));
    let details = by_owner[0].details.clone().unwrap();
    assert_eq!(
        (details["userId"].as_str(), details["role"].as_str()),
        (Some(member.id.to_string().as_str()), Some("MEMBER"))
    );
}

#[tokio::test]
async fn chamber_names_are_unique_per_grower_and_deleting_one_keeps_its_devices() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let other = create_grower(&app, &g.admin, "Other Farms").await;
    let path = format!("/api/v1/growers/{}/chambers", g.grower_id);

    let room1 = create_chamber(&app, &g.owner, g.grower_id, "Room 1").await;
    for dup in ["Room 1", "  Room 1 "] {
        let res = send_json(&app, Method::POST, &path, &g.owner.access, json!({ "name": dup })).await;
        assert_error(res, 409, &path).await;
    }
    let room2 = create_chamber(&app, &g.owner, g.grower_id, "Room 2").await;
    create_chamber(&app, &g.admin, other, "Room 1").await; // the same name in another grower is fine
    let err =
        assert_error(send_json(&app, Method::POST, &path, &g.owner.access, json!({ "name": " " })).await, 400, &path)
            .await;
    assert_eq!(distinct_detail_fields(&err), vec!["name"]);

    let list = read(&app, &path, &g.owner.access).await;
    assert_eq!(ids(&list), vec![room1.to_string(), room2.to_string()]);
    assert_eq!(list["meta"]["total"], 2);
    assert_eq!(list["data"][0]["name"], "Room 1");

    // Renaming onto a taken name is a conflict; otherwise it sticks.
    let room2_path = format!("{path}/{room2}");
    let res = send_json(&app, Method::PATCH, &room2_path, &g.owner.access, json!({ "name": "Room 1" })).await;
    assert_error(res, 409, &room2_path).await;
    let res = send_json(&app, Method::PATCH, &room2_path, &g.owner.access, json!({ "name": "Room 3" })).await;
    assert_eq!(json_of(res, 200).await["name"], "Room 3");
    let names: Vec<_> = read(&app, &path, &g.owner.access).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["Room 1", "Room 3"]);

    // A device in Room 1 stays when the room goes, without a chamber.
    let res = send_json(
        &app,
        Method::POST,
        "/api/v1/devices",
        &g.owner.access,
        json!({ "growerId": g.grower_id, "chamberId": room1, "name": "sensor" }),
    )
    .await;
    let dev = json_of(res, 201).await["device"].clone();
    assert_eq!(dev["chamberId"], room1.to_string());
    let in_room = read(&app, &format!("/api/v1/devices?chamberId={room1}"), &g.owner.access).await;
    assert_eq!(ids(&in_room), vec![dev["id"].as_str().unwrap().to_string()]);

    let room1_path = format!("{path}/{room1}");
    assert_eq!(send(&app, Method::DELETE, &room1_path, &g.owner.access, None).await.status(), 204);
    assert_error(send(&app, Method::DELETE, &room1_path, &g.owner.access, None).await, 404, &room1_path).await;
    let dev = read(&app, &format!("/api/v1/devices/{}", dev["id"].as_str().unwrap()), &g.owner.access).await;
    assert!(dev["chamberId"].is_null(), "{dev}");
    assert_eq!(ids(&read(&app, &path, &g.owner.access).await), vec![room2.to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Devices: provisioning, tokens, deletion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_device_is_provisioned_with_a_token_shown_only_once() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let room = create_chamber(&app, &g.owner, g.grower_id, "Room").await;

    let res = send_json(
        &app,
        Method::POST,
        "/api/v1/devices",
        &g.owner.access,
        json!({ "growerId": g.grower_id, "chamberId": room, "name": " Climate 1 ", "kind": "sensor",
                "metadata": { "firmware": "1.2.0", "pins": [1, 2] } }),
    )
    .await;
    let created = json_of(res, 201).await;
    let token = created["deviceToken"].as_str().expect("deviceToken").to_string();
    assert!(token.starts_with("mdt_"), "{token}");
    let d = &created["device"];
    let id: Uuid = d["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(d["growerId"], g.grower_id.to_string());
    assert_eq!(d["chamberId"], room.to_string());
    assert_eq!(d["name"], "Climate 1");
    assert_eq!(d["kind"], "sensor");
    assert_eq!(d["metadata"], json!({ "firmware": "1.2.0", "pins": [1, 2] }));
    assert_eq!(d["status"], "offline", "never seen yet: {d}");
    assert!(d["lastSeenAt"].is_null(), "{d}");
    assert_eq!(d["desiredVersion"], 0);
    ts_of(&d["createdAt"]);
    assert_no_token(d, &token);

    // Never again in a person's read, nor in the device's own.
    let mut bodies = vec![
        read(&app, &format!("/api/v1/devices/{id}"), &g.owner.access).await,
        read(&app, "/api/v1/devices", &g.owner.access).await,
        read(&app, &format!("/api/v1/devices?growerId={}", g.grower_id), &g.admin.access).await,
        read(&app, &format!("/api/v1/devices/{id}/state"), &g.owner.access).await,
    ];
    let me = json_of(device_get(&app, "/api/v1/devices/me", &token).await, 200).await;
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["growerId"], g.grower_id.to_string());
    bodies.push(me);
    bodies.push(json_of(device_get(&app, "/api/v1/devices/me/desired", &token).await, 200).await);
    for body in &bodies {
        assert_no_token(body, &token);
    }
    assert_eq!(bodies[1]["data"][0]["id"], id.to_string());

    // Stored as a hash only: the secret half is nowhere in the row.
    let row = device_row::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
    let secret = token.split_once('.').unwrap().1;
    assert!(!format!("{row:?}").contains(secret), "the token's secret is stored in the clear");

    // The device side takes only a valid `Device` token.
    let me_path = "/api/v1/devices/me";
    assert_error(get_authed(&app, me_path, &g.owner.access).await, 401, me_path).await;
    assert_error(app.get(me_path).await, 401, me_path).await;
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [forged.as_str(), "mdt_garbage", token.trim_start_matches("mdt_"), ""] {
        assert_error(device_get(&app, me_path, bad).await, 401, me_path).await;
    }
    let res = app.client.get(app.url(me_path)).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_error(res, 401, me_path).await;

    // Validation: each bad field named.
    let create = |body: Value| send_json(&app, Method::POST, "/api/v1/devices", &g.owner.access, body);
    for (body, field) in [
        (json!({ "growerId": g.grower_id, "name": "x", "metadata": [1, 2] }), "metadata"),
        (json!({ "growerId": g.grower_id, "name": "x", "metadata": "firmware 1.2" }), "metadata"),
        (json!({ "growerId": g.grower_id, "name": "" }), "name"),
        (json!({ "growerId": g.grower_id, "name": "x", "kind": "" }), "kind"),
        (json!({ "growerId": g.grower_id, "name": "x", "kind": "k".repeat(65) }), "kind"),
        (json!({ "growerId": "nope", "name": "x" }), "growerId"),
    ] {
        let err = assert_error(create(body.clone()).await, 400, "/api/v1/devices").await;
        assert_eq!(distinct_detail_fields(&err), vec![field], "{body}: {err}");
    }
    let big = json!({ "growerId": g.grower_id, "name": "x", "metadata": { "blob": "x".repeat(17 * 1024) } });
    let err = assert_error(create(big).await, 400, "/api/v1/devices").await;
    assert_eq!(distinct_detail_fields(&err), vec!["metadata"], "{err}");
    assert_error(
        create(json!({ "growerId": g.grower_id, "name": "x", "token": "mine" })).await,
        400,
        "/api/v1/devices",
    )
    .await;
    assert_error(create(json!({ "name": "x" })).await, 400, "/api/v1/devices").await;
    assert_error(create(json!({ "growerId": Uuid::now_v7(), "name": "x" })).await, 404, "/api/v1/devices").await;
    let res = create(json!({ "growerId": g.grower_id, "chamberId": Uuid::now_v7(), "name": "x" })).await;
    assert_error(res, 422, "/api/v1/devices").await;
    assert_eq!(read(&app, "/api/v1/devices", &g.owner.access).await["meta"]["total"], 1, "refusals create nothing");

    // Audited, without the token.
    let rows = audit_rows(&app, "device.created").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user_id, Some(g.owner.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(rows[0].ip_address.as_deref(), Some(LOCALHOST));
    assert!(!format!("{:?}", rows[0]).contains(secret));
}

#[tokio::test]
async fn rotating_a_token_kills_the_old_one_and_deleting_a_device_kills_it_all() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "sensor").await;
    let keep = create_device(&app, &g.owner, g.grower_id, "keeper").await;
    let path = format!("/api/v1/devices/{}", dev.id);
    let batch = |id: Uuid| json!([reading(id, "t", 20.0, Utc::now())]);
    json_of(device_get(&app, "/api/v1/devices/me", &dev.token).await, 200).await;

    // Rotation: a new token, the old one refused at once everywhere a device speaks.
    let rotated =
        json_of(send(&app, Method::POST, &format!("{path}/rotate-token"), &g.owner.access, None).await, 200).await;
    let new = rotated["deviceToken"].as_str().unwrap().to_string();
    assert!(new.starts_with("mdt_"), "{new}");
    assert_ne!(new, dev.token);
    assert_eq!(rotated["device"]["id"], dev.id.to_string());
    assert!(ts_of(&rotated["device"]["tokenRotatedAt"]) >= ts_of(&dev.body["device"]["tokenRotatedAt"]));
    for p in ["/api/v1/devices/me", "/api/v1/devices/me/desired"] {
        assert_error(device_get(&app, p, &dev.token).await, 401, p).await;
    }
    assert_error(report(&app, &dev.token, json!({ "fan": "on" })).await, 401, "/api/v1/devices/me/reported").await;
    let res = post_batch(&app, &device_auth(&dev), &batch(dev.id)).await;
    assert_error(res, 401, "/api/v1/telemetry/batch").await;
    let fresh = Device { id: dev.id, token: new.clone(), body: rotated.clone() };
    assert_eq!(json_of(device_get(&app, "/api/v1/devices/me", &new).await, 200).await["id"], dev.id.to_string());
    json_of(post_batch(&app, &device_auth(&fresh), &batch(dev.id)).await, 202).await;
    assert_no_token(&read(&app, &path, &g.owner.access).await, &new);
    let rows = audit_rows(&app, "device.token_rotated").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user_id, Some(g.owner.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(dev.id.to_string().as_str()));
    assert!(!format!("{:?}", rows[0]).contains(&new));

    // Deletion: gone from reads and lists, its token dead, every route 404 after.
    assert_eq!(send(&app, Method::DELETE, &path, &g.owner.access, None).await.status(), 204);
    assert_error(get_authed(&app, &path, &g.owner.access).await, 404, &path).await;
    assert_error(get_authed(&app, &path, &g.admin.access).await, 404, &path).await;
    let list = read(&app, "/api/v1/devices", &g.owner.access).await;
    assert_eq!(ids(&list), vec![keep.id.to_string()]);
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(read(&app, "/api/v1/devices?status=online", &g.admin.access).await["meta"]["total"], 0);
    for p in ["/api/v1/devices/me", "/api/v1/devices/me/desired"] {
        assert_error(device_get(&app, p, &new).await, 401, p).await;
    }
    assert_error(report(&app, &new, json!({ "fan": "on" })).await, 401, "/api/v1/devices/me/reported").await;
    let res = post_batch(&app, &device_auth(&fresh), &batch(dev.id)).await;
    assert_error(res, 401, "/api/v1/telemetry/batch").await;
    let res = post_batch(&app, &bearer(&g.owner), &batch(dev.id)).await;
    assert_error(res, 403, "/api/v1/telemetry/batch").await;
    for (method, p, body) in [
        (Method::DELETE, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({ "name": "back" }))),
        (Method::POST, format!("{path}/rotate-token"), None),
        (Method::GET, format!("{path}/state"), None),
        (Method::PUT, format!("{path}/desired"), Some(json!({ "fan": "on" }))),
        (Method::GET, format!("{path}/telemetry?metric=t"), None),
    ] {
        let res = send(&app, method, &p, &g.admin.access, body.as_ref()).await;
        assert_error(res, 404, bare(&p)).await;
    }
    // The other device is untouched, and the row is kept (soft delete), marked deleted.
    json_of(device_get(&app, "/api/v1/devices/me", &keep.token).await, 200).await;
    let row = device_row::Entity::find_by_id(dev.id).one(&app.state.db).await.unwrap().expect("row kept");
    assert!(row.deleted_at.is_some());
    let rows = audit_rows(&app, "device.deleted").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user_id, Some(g.owner.id));
    assert_eq!(rows[0].resource_id.as_deref(), Some(dev.id.to_string().as_str()));
    assert_eq!(audit_rows(&app, "device.token_rotated").await.len(), 1, "the refused rotation wrote nothing");
}

#[tokio::test]
async fn patching_a_device_moves_it_only_between_chambers_of_its_own_grower() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let other = create_grower(&app, &g.admin, "Other Farms").await;
    let room = create_chamber(&app, &g.owner, g.grower_id, "Room").await;
    let foreign_room = create_chamber(&app, &g.admin, other, "Foreign").await;
    let dev = create_device(&app, &g.owner, g.grower_id, "sensor").await;
    let path = format!("/api/v1/devices/{}", dev.id);
    let patch = |body: Value| send_json(&app, Method::PATCH, &path, &g.owner.access, body);

    let d = json_of(patch(json!({ "chamberId": room, "name": " Renamed ", "kind": "gateway" })).await, 200).await;
    assert_eq!(
        (d["chamberId"].as_str(), d["name"].as_str(), d["kind"].as_str()),
        (Some(room.to_string().as_str()), Some("Renamed"), Some("gateway"))
    );
    assert_no_token(&d, &dev.token);

    // Another grower's chamber, or none at all: 422, nothing changes.
    for chamber in [foreign_room, Uuid::now_v7()] {
        let err = assert_error(patch(json!({ "chamberId": chamber, "name": "Moved" })).await, 422, &path).await;
        assert!(err["message"].as_str().unwrap().contains("chamberId"), "{err}");
    }
    let d = read(&app, &path, &g.owner.access).await;
    assert_eq!(d["chamberId"], room.to_string());
    assert_eq!(d["name"], "Renamed");

    // Metadata must be an object; `null` clears fields; absent fields stay.
    for bad in [json!([1]), json!("text"), json!(5)] {
        let err = assert_error(patch(json!({ "metadata": bad })).await, 400, &path).await;
        assert_eq!(distinct_detail_fields(&err), vec!["metadata"], "{err}");
    }
    let d = json_of(patch(json!({ "metadata": { "fw": "2" } })).await, 200).await;
    assert_eq!(d["metadata"], json!({ "fw": "2" }));
    assert_eq!(d["chamberId"], room.to_string(), "absent means unchanged");
    let d = json_of(patch(json!({ "chamberId": null, "kind": null, "metadata": null })).await, 200).await;
    assert!(d["chamberId"].is_null() && d["kind"].is_null() && d["metadata"].is_null(), "{d}");
    assert_eq!(d["name"], "Renamed");
    let d = read(&app, &path, &g.owner.access).await;
    assert!(d["chamberId"].is_null(), "{d}");
    assert_eq!(read(&app, &format!("/api/v1/devices?chamberId={room}"), &g.owner.access).await["meta"]["total"], 0);

    for (bad, field) in
        [(json!({ "name": "" }), "name"), (json!({ "kind": "" }), "kind"), (json!({ "chamberId": "x" }), "chamberId")]
    {
        let err = assert_error(patch(bad.clone()).await, 400, &path).await;
        assert_eq!(distinct_detail_fields(&err), vec![field], "{bad}: {err}");
    }
    for sneaky in [json!({ "growerId": other }), json!({ "deviceToken": "mdt_x" }), json!({ "desiredVersion": 9 })] {
        assert_error(patch(sneaky).await, 400, &path).await;
    }
    let row = device_row::Entity::find_by_id(dev.id).one(&app.state.db).await.unwrap().unwrap();
    assert_eq!(row.grower_id, g.grower_id);
    assert_eq!(row.desired_version, 0);
    json_of(device_get(&app, "/api/v1/devices/me", &dev.token).await, 200).await;
}

// ---------------------------------------------------------------------------------------------
// Listing and presence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn device_list_is_paged_and_filtered_by_grower_chamber_and_status() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let other = create_grower(&app, &g.admin, "Other Farms").await;
    let foreign = create_device(&app, &g.admin, other, "foreign").await;
    let mut devs = Vec::new();
    for name in ["d1", "d2", "d3", "d4"] {
        devs.push(create_device(&app, &g.owner, g.grower_id, name).await);
    }
    let [d1, d2, d3, d4] = [&devs[0], &devs[1], &devs[2], &devs[3]];

    // Contact in each way a device makes it; d4 and the foreign device stay silent.
    json_of(post_batch(&app, &device_auth(d1), &json!([reading(d1.id, "t", 20.0, Utc::now())])).await, 202).await;
    json_of(device_get(&app, "/api/v1/devices/me/desired", &d2.token).await, 200).await;
    json_of(report(&app, &d3.token, json!({ "fan": "on" })).await, 200).await;

    // Paging: newest first, with the contract's meta.
    let gp = format!("growerId={}", g.grower_id);
    let p1 = read(&app, &format!("/api/v1/devices?{gp}&limit=3"), &g.admin.access).await;
    assert_eq!(p1["meta"], json!({ "page": 1, "limit": 3, "total": 4, "totalPages": 2, "hasMore": true }));
    assert_eq!(ids(&p1), vec![d4.id.to_string(), d3.id.to_string(), d2.id.to_string()]);
    let p2 = read(&app, &format!("/api/v1/devices?{gp}&limit=3&page=2"), &g.admin.access).await;
    assert_eq!(p2["meta"], json!({ "page": 2, "limit": 3, "total": 4, "totalPages": 2, "hasMore": false }));
    assert_eq!(ids(&p2), vec![d1.id.to_string()]);
    let p9 = read(&app, &format!("/api/v1/devices?{gp}&page=9"), &g.admin.access).await;
    assert_eq!(p9["data"], json!([]));
    assert_eq!(p9["meta"]["total"], 4);
    assert_eq!(read(&app, "/api/v1/devices?limit=500", &g.admin.access).await["meta"]["limit"], 100);
    // Without growerId: all the caller's growers (every grower for an admin).
    assert_eq!(read(&app, "/api/v1/devices", &g.owner.access).await["meta"]["total"], 4);
    assert_eq!(read(&app, "/api/v1/devices", &g.admin.access).await["meta"]["total"], 5);
    let theirs = read(&app, &format!("/api/v1/devices?growerId={other}"), &g.admin.access).await;
    assert_eq!(ids(&theirs), vec![foreign.id.to_string()]);
    // A grower the owner is not in: 404, not an empty list.
    let res = get_authed(&app, &format!("/api/v1/devices?growerId={other}"), &g.owner.access).await;
    assert_error(res, 404, "/api/v1/devices").await;

    // Status: online after contact, offline when never seen.
    let online = read(&app, &format!("/api/v1/devices?{gp}&status=online"), &g.owner.access).await;
    let got: HashSet<String> = ids(&online).into_iter().collect();
    assert_eq!(got, set_of(&[&d1.id, &d2.id, &d3.id]));
    assert_eq!(online["meta"]["total"], 3);
    for d in online["data"].as_array().unwrap() {
        assert_eq!(d["status"], "online", "{d}");
        ts_of(&d["lastSeenAt"]);
    }
    let offline = read(&app, &format!("/api/v1/devices?{gp}&status=offline"), &g.owner.access).await;
    assert_eq!(ids(&offline), vec![d4.id.to_string()]);
    assert_eq!(offline["data"][0]["status"], "offline");
    assert!(offline["data"][0]["lastSeenAt"].is_null());
    let everywhere = read(&app, "/api/v1/devices?status=offline", &g.admin.access).await;
    let got: HashSet<String> = ids(&everywhere).into_iter().collect();
    assert_eq!(got, set_of(&[&d4.id, &foreign.id]));
    let state = read(&app, &format!("/api/v1/devices/{}/state", d3.id), &g.owner.access).await;
    assert_eq!(state["status"], "online");
    assert_eq!(read(&app, &format!("/api/v1/devices/{}", d4.id), &g.owner.access).await["status"], "offline");

    // Chamber filter, alone and combined.
    let room = create_chamber(&app, &g.owner, g.grower_id, "Room").await;
    for d in [d2, d4] {
        let res = send_json(
            &app,
            Method::PATCH,
            &format!("/api/v1/devices/{}", d.id),
            &g.owner.access,
            json!({ "chamberId": room }),
        )
        .await;
        json_of(res, 200).await;
    }
    let in_room = read(&app, &format!("/api/v1/devices?chamberId={room}"), &g.owner.access).await;
    assert_eq!(ids(&in_room), vec![d4.id.to_string(), d2.id.to_string()]);
    let in_room = read(&app, &format!("/api/v1/devices?chamberId={room}&status=online&{gp}"), &g.owner.access).await;
    assert_eq!(ids(&in_room), vec![d2.id.to_string()]);

    // Bad parameters are named.
    for (query, field) in [
        ("status=sleeping", "status"),
        ("growerId=nope", "growerId"),
        ("chamberId=nope", "chamberId"),
        ("page=0", "page"),
        ("limit=abc", "limit"),
    ] {
        let res = get_authed(&app, &format!("/api/v1/devices?{query}"), &g.owner.access).await;
        let err = assert_error(res, 400, "/api/v1/devices").await;
        assert_eq!(distinct_detail_fields(&err), vec![field], "{query}: {err}");
    }
}

#[tokio::test]
async fn a_device_goes_offline_after_the_configured_silence_and_back_online_on_contact() {
    let app = spawn_app_with(&[("DEVICE_OFFLINE_AFTER_SECS", "1")], Router::new()).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "sensor").await;
    let path = format!("/api/v1/devices/{}", dev.id);
    assert_eq!(read(&app, &path, &g.owner.access).await["status"], "offline");

    // An accepted batch is contact.
    json_of(post_batch(&app, &device_auth(&dev), &json!([reading(dev.id, "t", 20.0, Utc::now())])).await, 202).await;
    let seen = ts_of(&read(&app, &path, &g.owner.access).await["lastSeenAt"]);

    // More than the threshold later, silence means offline (the last contact is still shown).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let d = read(&app, &path, &g.owner.access).await;
    assert_eq!(d["status"], "offline", "{d}");
    assert_eq!(ts_of(&d["lastSeenAt"]), seen);
    assert_eq!(read(&app, &format!("{path}/state"), &g.owner.access).await["status"], "offline");
    let offline = read(&app, "/api/v1/devices?status=offline", &g.owner.access).await;
    assert_eq!(ids(&offline), vec![dev.id.to_string()]);
    assert_eq!(read(&app, "/api/v1/devices?status=online", &g.owner.access).await["meta"]["total"], 0);

    // A device-authenticated request is contact too: the answer already says online.
    let me = json_of(device_get(&app, "/api/v1/devices/me", &dev.token).await, 200).await;
    assert_eq!(me["status"], "online", "{me}");
    assert!(ts_of(&me["lastSeenAt"]) > seen, "{me}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(read(&app, &path, &g.owner.access).await["status"], "offline");
    let state = json_of(report(&app, &dev.token, json!({ "fan": "on" })).await, 200).await;
    assert_eq!(state["status"], "online", "{state}");
}

// ---------------------------------------------------------------------------------------------
// Desired and reported state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn desired_state_is_versioned_and_guarded_by_if_version() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let state_path = format!("/api/v1/devices/{}/state", dev.id);
    let path = format!("/api/v1/devices/{}/desired", dev.id);
    let put = |body: Value| send_json(&app, Method::PUT, &path, &g.owner.access, body);

    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["deviceId"], dev.id.to_string());
    assert_eq!(s["desired"], json!({}));
    assert_eq!(s["desiredVersion"], 0);
    assert_eq!(s["reported"], json!({}));
    assert!(s["lastSeenAt"].is_null() && s["desiredUpdatedAt"].is_null() && s["reportedState"].is_null(), "{s}");
    assert_eq!(s["inSync"], true, "nothing asked yet: {s}");

    // v0 -> v1 with the right ifVersion; ifVersion is not part of the document.
    let out = json_of(put(json!({ "fan": "on", "light": { "level": 50 }, "ifVersion": 0 })).await, 200).await;
    assert_eq!(out, json!({ "desired": { "fan": "on", "light": { "level": 50 } }, "desiredVersion": 1 }));

    // A stale ifVersion: 409, nothing changes.
    let err = assert_error(put(json!({ "fan": "off", "ifVersion": 0 })).await, 409, &path).await;
    assert_eq!(err["error"], "Conflict");
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["desired"], json!({ "fan": "on", "light": { "level": 50 } }));
    assert_eq!(s["desiredVersion"], 1);
    let first_update = ts_of(&s["desiredUpdatedAt"]);

    // The same document again is no change: same version, with or without ifVersion.
    for same in [
        json!({ "light": { "level": 50 }, "fan": "on" }),
        json!({ "fan": "on", "light": { "level": 50 }, "ifVersion": 1 }),
    ] {
        let out = json_of(put(same).await, 200).await;
        assert_eq!(out["desiredVersion"], 1, "{out}");
    }
    assert_eq!(ts_of(&read(&app, &state_path, &g.owner.access).await["desiredUpdatedAt"]), first_update);

    // A new document replaces the old one (no merge), one version up.
    let out = json_of(put(json!({ "light": { "level": 60 } })).await, 200).await;
    assert_eq!(out, json!({ "desired": { "light": { "level": 60 } }, "desiredVersion": 2 }));
    let out = json_of(put(json!({ "light": { "level": 70 }, "ifVersion": 2 })).await, 200).await;
    assert_eq!(out["desiredVersion"], 3);

    // Bad input: 400, nothing changes.
    for bad in [
        json!({ "fan": "x", "ifVersion": "3" }),
        json!({ "fan": "x", "ifVersion": 2.5 }),
        json!({ "fan": "x", "ifVersion": -1 }),
    ] {
        let err = assert_error(put(bad.clone()).await, 400, &path).await;
        assert_eq!(distinct_detail_fields(&err), vec!["ifVersion"], "{bad}: {err}");
    }
    for bad in [json!([{ "fan": "x" }]), json!("fan"), json!(3), Value::Null] {
        assert_error(put(bad).await, 400, &path).await;
    }
    let res = authed(&app, Method::PUT, &path, &g.owner.access)
        .header("content-type", "application/json")
        .body("{fan")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, &path).await;
    let res = authed(&app, Method::PUT, &path, &g.owner.access).body("fan=on").send().await.unwrap();
    assert_error(res, 415, &path).await;
    let big = json!({ "blob": "x".repeat(17 * 1024) });
    assert_error(put(big).await, 400, &path).await;
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!((s["desired"].clone(), s["desiredVersion"].clone()), (json!({ "light": { "level": 70 } }), json!(3)));

    // The device reads what people wrote; a person's token cannot read it as the device.
    let mine = json_of(device_get(&app, "/api/v1/devices/me/desired", &dev.token).await, 200).await;
    assert_eq!(mine, json!({ "desired": { "light": { "level": 70 } }, "desiredVersion": 3 }));
    let me_desired = "/api/v1/devices/me/desired";
    assert_error(get_authed(&app, me_desired, &g.owner.access).await, 401, me_desired).await;

    // One audit row per change, by who made it.
    let rows = audit_rows(&app, "device.desired_changed").await;
    let versions: Vec<_> = rows.iter().map(|r| r.details.clone().unwrap()["desiredVersion"].clone()).collect();
    assert_eq!(versions, vec![json!(1), json!(2), json!(3)], "{rows:?}");
    assert!(rows.iter().all(|r| r.user_id == Some(g.owner.id)
        && r.resource_id.as_deref() == Some(dev.id.to_string().as_str())
        && r.ip_address.as_deref() == Some(LOCALHOST)));
}

#[tokio::test]
async fn reported_state_and_readings_show_in_the_state_and_in_sync_follows_versions() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let state_path = format!("/api/v1/devices/{}/state", dev.id);
    let desired_path = format!("/api/v1/devices/{}/desired", dev.id);
    let put = |body: Value| send_json(&app, Method::PUT, &desired_path, &g.owner.access, body);

    // The latest reading per metric shows under `reported`.
    let ts = Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(10);
    let batch = json!([
        reading(dev.id, "t", 21.5, ts - chrono::Duration::seconds(5)),
        reading(dev.id, "t", 22.5, ts),
        reading(dev.id, "rh", 80.0, ts)
    ]);
    json_of(post_batch(&app, &device_auth(&dev), &batch).await, 202).await;
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["reported"]["t"]["value"], 22.5, "{s}");
    assert_eq!(ts_of(&s["reported"]["t"]["ts"]), ts);
    assert_eq!(s["reported"]["rh"]["value"], 80.0);
    ts_of(&s["lastSeenAt"]);

    assert_eq!(json_of(put(json!({ "fan": "on" })).await, 200).await["desiredVersion"], 1);
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["inSync"], false, "asked, not yet applied: {s}");

    // The device says it applied version 1.
    let out =
        json_of(report(&app, &dev.token, json!({ "fan": "on", "rpm": 1200, "desiredVersion": 1 })).await, 200).await;
    assert_eq!(out["deviceId"], dev.id.to_string());
    assert_eq!(out["reportedVersion"], 1);
    assert_eq!(out["inSync"], true, "{out}");
    assert_eq!(out["reportedState"]["rpm"], 1200);
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["inSync"], true, "{s}");
    assert_eq!(s["reportedVersion"], 1);
    assert_eq!(s["reportedState"]["fan"], "on");
    assert_eq!(s["desired"], json!({ "fan": "on" }));
    ts_of(&s["reportedAt"]);
    assert_eq!(s["reported"]["t"]["value"], 22.5, "readings are not replaced by a report");

    // A new desired version puts it out of sync until the device catches up.
    assert_eq!(json_of(put(json!({ "fan": "off" })).await, 200).await["desiredVersion"], 2);
    assert_eq!(read(&app, &state_path, &g.owner.access).await["inSync"], false);
    let out = json_of(report(&app, &dev.token, json!({ "fan": "on", "desiredVersion": 1 })).await, 200).await;
    assert_eq!(out["inSync"], false, "still on version 1: {out}");
    let out = json_of(report(&app, &dev.token, json!({ "fan": "off", "desiredVersion": 2 })).await, 200).await;
    assert_eq!(out["inSync"], true, "{out}");
    assert_eq!(read(&app, &state_path, &g.owner.access).await["inSync"], true);

    // Bad reports are refused and change nothing; only the device itself may report.
    let reported = "/api/v1/devices/me/reported";
    for (bad, field) in [
        (json!({ "desiredVersion": "2" }), Some("desiredVersion")),
        (json!({ "desiredVersion": -1 }), Some("desiredVersion")),
        (json!([1]), None),
    ] {
        let err = assert_error(report(&app, &dev.token, bad).await, 400, reported).await;
        if let Some(f) = field {
            assert_eq!(distinct_detail_fields(&err), vec![f], "{err}");
        }
    }
    let res =
        send_json(&app, Method::POST, reported, &g.owner.access, json!({ "fan": "on", "desiredVersion": 9 })).await;
    assert_error(res, 401, reported).await;
    let res = app.client.post(app.url(reported)).json(&json!({ "desiredVersion": 9 })).send().await.unwrap();
    assert_error(res, 401, reported).await;
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["reportedVersion"], 2);
    assert_eq!(s["reportedState"], json!({ "fan": "off", "desiredVersion": 2 }));
}

#[tokio::test]
async fn concurrent_desired_writes_apply_one_by_one_and_if_version_lets_exactly_one_win() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = format!("/api/v1/devices/{}/desired", dev.id);
    let state_path = format!("/api/v1/devices/{}/state", dev.id);
    const WRITERS: i64 = 6;

    // Without ifVersion nobody asked for a conditional write: every change applies, each
    // gets its own version, and the last one stays.
    let puts = (0..WRITERS).map(|i| send_json(&app, Method::PUT, &path, &g.owner.access, json!({ "writer": i })));
    let mut versions = Vec::new();
    let mut last = Value::Null;
    for res in futures_util::future::join_all(puts).await {
        let body = json_of(res, 200).await;
        let v = body["desiredVersion"].as_i64().unwrap();
        if v == WRITERS {
            last = body["desired"].clone();
        }
        versions.push(v);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=WRITERS).collect::<Vec<_>>());
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["desiredVersion"], WRITERS);
    assert_eq!(s["desired"], last);

    // With the same ifVersion, exactly one wins; the others are told to re-read.
    let puts = (0..WRITERS)
        .map(|i| send_json(&app, Method::PUT, &path, &g.owner.access, json!({ "racer": i, "ifVersion": WRITERS })));
    let mut winners = Vec::new();
    for res in futures_util::future::join_all(puts).await {
        match res.status().as_u16() {
            200 => winners.push(res.json::<Value>().await.unwrap()),
            _ => {
                assert_error(res, 409, &path).await;
            }
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0]["desiredVersion"], WRITERS + 1);
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["desiredVersion"], WRITERS + 1);
    assert_eq!(s["desired"], winners[0]["desired"]);
    assert_eq!(audit_rows(&app, "device.desired_changed").await.len() as i64, WRITERS + 1);
}

#[tokio::test]
async fn the_same_desired_document_is_no_change_whatever_numbers_it_holds() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = format!("/api/v1/devices/{}/desired", dev.id);
    let doc = json!({ "setpoint": 21.5, "ratio": 0.1, "count": 3, "big": 1e16, "tiny": 1e-7, "huge": 12345678901234567890u64 });
    assert_eq!(
        json_of(send_json(&app, Method::PUT, &path, &g.owner.access, doc.clone()).await, 200).await["desiredVersion"],
        1
    );
    for _ in 0..2 {
        let out = json_of(send_json(&app, Method::PUT, &path, &g.owner.access, doc.clone()).await, 200).await;
        assert_eq!(out["desiredVersion"], 1, "the stored document is the one sent: {out}");
    }
    let mut same = doc.clone();
    same["ifVersion"] = json!(1);
    assert_eq!(
        json_of(send_json(&app, Method::PUT, &path, &g.owner.access, same).await, 200).await["desiredVersion"],
        1
    );
    assert_eq!(audit_rows(&app, "device.desired_changed").await.len(), 1);
}

/// Client input never makes a 500: a NUL character (valid JSON, `\u0000`) in any text the
/// greenhouse routes store is either stored or refused with 400, on every backend.
#[tokio::test]
async fn nul_characters_in_greenhouse_input_never_cause_a_500() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let nul = "bad\u{0}name";
    let grower = format!("/api/v1/growers/{}", g.grower_id);
    let device = format!("/api/v1/devices/{}", dev.id);
    let attempts: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/api/v1/growers".into(), json!({ "name": nul })),
        (Method::PATCH, grower.clone(), json!({ "name": nul })),
        (Method::POST, format!("{grower}/chambers"), json!({ "name": nul })),
        (Method::POST, "/api/v1/devices".into(), json!({ "growerId": g.grower_id, "name": nul })),
        (Method::POST, "/api/v1/devices".into(), json!({ "growerId": g.grower_id, "name": "ok", "kind": nul })),
        (
            Method::POST,
            "/api/v1/devices".into(),
            json!({ "growerId": g.grower_id, "name": "ok", "metadata": { "k": nul } }),
        ),
        (Method::PATCH, device.clone(), json!({ "metadata": { nul: 1 } })),
        (Method::PUT, format!("{device}/desired"), json!({ "mode": nul })),
    ];
    let mut answers = Vec::new();
    for (method, path, body) in attempts {
        let res = send_json(&app, method.clone(), &path, &g.admin.access, body.clone()).await;
        answers.push((format!("{method} {path} {body}"), path, res));
    }
    let res = report(&app, &dev.token, json!({ "mode": nul })).await;
    answers.push(("POST /devices/me/reported".into(), "/api/v1/devices/me/reported".into(), res));
    let failed: Vec<String> =
        answers.iter().filter(|(_, _, res)| res.status().is_server_error()).map(|(what, _, _)| what.clone()).collect();
    assert!(failed.is_empty(), "5xx for client input: {failed:#?}");
    for (_, path, res) in answers {
        if !res.status().is_success() {
            assert_error(res, 400, &path).await;
        }
    }
}
