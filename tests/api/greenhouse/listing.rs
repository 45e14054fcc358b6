//! The device list (paged, filtered by grower, chamber and status) and presence (`offline`
//! after the configured silence, `online` again on contact).

use std::collections::HashSet;

use axum::Router;
use chrono::Utc;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    accounts::{get_authed, json_of, send_json},
    assert_error, distinct_detail_fields,
    greenhouse::{create_device, create_grower, device_auth, greenhouse, post_batch, reading, report},
    ids, spawn_app, spawn_app_with, ts_of,
};

use super::{create_chamber, device_get, read};

fn set_of(ids: &[&Uuid]) -> HashSet<String> {
    ids.iter().map(|i| i.to_string()).collect()
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
