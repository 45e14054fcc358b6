//! Devices: provisioning with a token shown only once, token rotation, soft deletion, and
//! moving a device only between chambers of its own grower.

use chrono::Utc;
use mash::greenhouse::entity::device as device_row;
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{LOCALHOST, audit_rows, get_authed, json_of, send, send_json},
    assert_error, distinct_detail_fields,
    greenhouse::{Device, bearer, create_device, create_grower, device_auth, greenhouse, post_batch, reading, report},
    ids, spawn_app, ts_of,
};

use super::{assert_no_token, bare, create_chamber, device_get, read};

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
