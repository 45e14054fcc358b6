//! Growers (created by admins, each grower's people see only their own, with their role), their
//! members (owners manage, members only read, a grower keeps an owner) and chambers.

use std::collections::HashSet;

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{LOCALHOST, audit_rows, get_authed, json_of, register, send, send_json, user_with_role},
    assert_error, distinct_detail_fields,
    greenhouse::{add_member, bearer, create_device, create_grower, greenhouse, post_batch, reading},
    ids, spawn_app, ts_of,
};

use super::{create_chamber, device_get, read};

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
