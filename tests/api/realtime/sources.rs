//! The events of each source: desired and reported state, alerts (open alerts are the
//! snapshot) and orders (reaching their customer).

use serde_json::json;

use crate::helpers::{
    accounts::{admin, json_of, register},
    alerts::alert_action,
    greenhouse::{bearer, create_device, greenhouse, reading, report_ok, send_readings},
    quiet_app,
    rt_client::{WAIT, WsClient, id_of},
    shop::{open_shop_by, pay, product},
};

use super::{
    alerts, assert_none_on, at, base, cancel_order, desired, micros, orders, place_order, put_desired, reported,
    temp_rule,
};

// ---------------------------------------------------------------------------------------------
// 4, 5. Desired and reported state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_desired_state_events_follow_versions_and_unsubscribe_stops_them() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "on" })).await;

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"], json!({ "deviceId": dev.id, "desired": { "fan": "on" }, "desiredVersion": 1 }));
    let s = id_of(&snap);

    let out = put_desired(&app, &g.owner, dev.id, json!({ "fan": "off", "light": 40 })).await;
    assert_eq!(out["desiredVersion"], 2);
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 1);
    assert_eq!(
        ev["data"],
        json!({ "deviceId": dev.id, "desired": { "fan": "off", "light": 40 }, "desiredVersion": 2 })
    );

    // The same document again is no change, so no event: the next event is the next change.
    assert_eq!(put_desired(&app, &g.owner, dev.id, json!({ "light": 40, "fan": "off" })).await["desiredVersion"], 2);
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "auto" })).await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2, "the unchanged PUT published nothing: {ev}");
    assert_eq!(ev["data"]["desiredVersion"], 3, "{ev}");
    assert_eq!(ev["data"]["desired"], json!({ "fan": "auto" }));

    // Unsubscribe: answered, and no more events of the path.
    ws.send_json(json!({ "type": "unsubscribe", "path": path })).await;
    let ack = ws.next_on(&path, WAIT).await;
    assert_eq!(ack, json!({ "type": "unsubscribed", "path": path }));
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "off" })).await;
    let mut other = WsClient::authed(&app, &g.owner.access).await;
    other.snapshot(&path).await;
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "on" })).await;
    other.expect_event(&path).await;
    assert_none_on(&ws.ping_round_trip().await, &path, "unsubscribed");
}

#[tokio::test]
async fn realtime_reported_state_is_published_on_every_report() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = reported(dev.id);
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "on" })).await;

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"]["deviceId"], dev.id.to_string(), "{snap}");
    assert_eq!(snap["data"]["inSync"], false, "version 1 asked, nothing applied: {snap}");
    let s = id_of(&snap);

    let out = report_ok(&app, &dev, json!({ "fan": "on", "rpm": 1200, "desiredVersion": 1 })).await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 1);
    let d = &ev["data"];
    assert_eq!(d["deviceId"], dev.id.to_string(), "{ev}");
    assert_eq!(d["reportedVersion"], 1, "{ev}");
    assert_eq!(d["inSync"], true, "{ev}");
    assert_eq!(d["reported"]["rpm"], 1200, "the reported document: {ev}");
    assert_eq!(micros(&d["reportedAt"]), micros(&out["reportedAt"]), "{ev} vs {out}");

    // A report that is behind the desired version says so.
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "off" })).await;
    report_ok(&app, &dev, json!({ "fan": "on", "desiredVersion": 1 })).await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2);
    assert_eq!(ev["data"]["inSync"], false, "{ev}");
    assert_eq!(ev["data"]["reported"]["fan"], "on", "{ev}");
}

// ---------------------------------------------------------------------------------------------
// 6, 7. Alerts and orders
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_alert_changes_are_published_and_open_alerts_are_the_snapshot() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "sensor").await;
    temp_rule(&app, &g.owner, g.grower_id).await;
    let path = alerts(g.grower_id);
    let t0 = base();

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"], json!({ "alerts": [] }));
    let s = id_of(&snap);

    send_readings(&app, &bearer(&g.owner), &[reading(dev.id, "temp", 35.0, at(t0, 0))]).await;
    app.run_jobs().await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 1);
    assert_eq!(ev["data"]["change"], "created", "{ev}");
    let alert = &ev["data"]["alert"];
    assert_eq!(alert["status"], "active", "{ev}");
    let alert_id = alert["id"].as_str().unwrap_or_else(|| panic!("alert.id: {ev}")).to_string();

    // Another breaching batch updates the same alert.
    send_readings(&app, &bearer(&g.owner), &[reading(dev.id, "temp", 36.0, at(t0, 1000))]).await;
    app.run_jobs().await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2);
    assert_eq!(ev["data"]["change"], "updated", "{ev}");
    assert_eq!(ev["data"]["alert"]["id"], alert_id.as_str(), "{ev}");
    assert_eq!(ev["data"]["alert"]["count"], 2, "{ev}");

    // A new subscriber's snapshot lists the open alert.
    let mut late = WsClient::authed(&app, &g.owner.access).await;
    let snap = late.snapshot(&path).await;
    let listed = snap["data"]["alerts"].as_array().unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(listed.len(), 1, "{snap}");
    assert_eq!(listed[0]["id"], alert_id.as_str());
    assert_eq!(listed[0]["count"], 2, "{snap}");
    assert_eq!(id_of(&snap), s + 2, "the snapshot covers both events");

    json_of(alert_action(&app, &g.owner, &json!(alert_id), "ack").await, 200).await;
    app.run_jobs().await;
    for ws in [&mut ws, &mut late] {
        let ev = ws.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + 3, "{ev}");
        assert_eq!(ev["data"]["change"], "acknowledged", "{ev}");
        assert_eq!(ev["data"]["alert"]["id"], alert_id.as_str());
        assert_eq!(ev["data"]["alert"]["status"], "acknowledged", "{ev}");
    }
    // Acknowledged alerts are still open: listed.
    let mut third = WsClient::authed(&app, &g.owner.access).await;
    let snap = third.snapshot(&path).await;
    assert_eq!(snap["data"]["alerts"][0]["status"], "acknowledged", "{snap}");

    json_of(alert_action(&app, &g.owner, &json!(alert_id), "resolve").await, 200).await;
    app.run_jobs().await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 4, "{ev}");
    assert_eq!(ev["data"]["change"], "resolved", "{ev}");
    let mut fourth = WsClient::authed(&app, &g.owner.access).await;
    assert_eq!(fourth.snapshot(&path).await["data"], json!({ "alerts": [] }), "resolved alerts are not open");
}

#[tokio::test]
async fn realtime_order_changes_reach_their_customer() {
    let app = quiet_app(&[]).await;
    let boss = admin(&app).await;
    let goods = product(&app, &open_shop_by(&app, &boss).await, "4.50", 10_000).await;
    let customer = register(&app, "customer").await;
    let path = orders(customer.id);

    let mut ws = WsClient::authed(&app, &customer.access).await;
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"], json!({ "orders": [] }));
    let s = id_of(&snap);

    let first = place_order(&app, &customer, goods).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 1);
    assert_eq!(ev["data"]["change"], "created", "{ev}");
    assert_eq!(ev["data"]["order"]["id"], first_id.as_str(), "{ev}");
    assert_eq!(ev["data"]["order"]["status"], "pending", "{ev}");

    let second = place_order(&app, &customer, goods).await;
    let second_id = second["id"].as_str().unwrap().to_string();
    assert_eq!(ws.expect_event(&path).await["data"]["order"]["id"], second_id.as_str());

    cancel_order(&app, &customer, &first_id).await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 3);
    assert_eq!(ev["data"]["change"], "cancelled", "{ev}");
    assert_eq!(ev["data"]["order"]["id"], first_id.as_str());
    assert_eq!(ev["data"]["order"]["status"], "cancelled");

    pay(&app, &customer, &second_id).await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 4);
    assert_eq!(ev["data"]["change"], "paid", "{ev}");
    assert_eq!(ev["data"]["order"]["status"], "paid");

    // The snapshot lists pending and paid orders, not cancelled ones.
    let third = place_order(&app, &customer, goods).await;
    ws.expect_event(&path).await;
    let mut late = WsClient::authed(&app, &customer.access).await;
    let snap = late.snapshot(&path).await;
    let mut listed: Vec<(String, String)> = snap["data"]["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("{snap}"))
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_string(), o["status"].as_str().unwrap().to_string()))
        .collect();
    listed.sort();
    let mut expected =
        vec![(second_id, "paid".to_string()), (third["id"].as_str().unwrap().to_string(), "pending".to_string())];
    expected.sort();
    assert_eq!(listed, expected, "{snap}");
    assert_eq!(id_of(&snap), s + 5);

    // The admin reads anyone's orders.
    let mut boss_ws = WsClient::authed(&app, &boss.access).await;
    assert_eq!(id_of(&boss_ws.snapshot(&path).await), s + 5);
}
