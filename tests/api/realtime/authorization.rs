//! Who may read what: every path is for its grower's members (or the customer's own orders) and
//! admins; the refused see nothing of it, and malformed or unknown paths are refused alike.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, json_of, register, user_with_role},
    greenhouse::{
        add_member, bearer, create_device, device_auth, greenhouse, greenhouse_by, reading, report_ok, send_readings,
    },
    quiet_app,
    rt_client::{SseClient, WAIT, WsClient, id_of},
    shop::{open_shop_by, product},
};

use super::{
    alerts, assert_none_on, at, base, desired, live, member_entry, orders, place_order, presence, put_desired,
    reported, temp_rule,
};

// ---------------------------------------------------------------------------------------------
// 2. Who may read what
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Live,
    Desired,
    Reported,
    Alerts,
    Presence,
    Orders,
}

/// A connection refused some paths; it watches a path of its own, whose events prove that
/// everything published before them has gone past this connection.
struct Intruder {
    name: &'static str,
    who: Account,
    ws: WsClient,
    own: Own,
    counter: u64,
}

enum Own {
    /// Changes the desired state of this device (the intruder's own).
    Desired(Uuid),
    /// Places an order of this product (the intruder is a customer).
    Orders(Uuid),
}

impl Intruder {
    async fn new(app: &TestApp, name: &'static str, who: &Account, own: Own) -> Intruder {
        let mut ws = WsClient::authed(app, &who.access).await.named(name);
        let path = match own {
            Own::Desired(d) => desired(d),
            Own::Orders(_) => orders(who.id),
        };
        ws.snapshot(&path).await;
        Intruder { name, who: who.clone(), ws, own, counter: 0 }
    }

    /// Causes an event on its own path and reads up to it and a pong: nothing of `refused` may
    /// have arrived.
    async fn assert_saw_nothing_of(&mut self, app: &TestApp, refused: &str) {
        self.counter += 1;
        let own_path = match self.own {
            Own::Desired(d) => {
                put_desired(app, &self.who, d, json!({ "n": self.counter })).await;
                desired(d)
            }
            Own::Orders(p) => {
                place_order(app, &self.who, p).await;
                orders(self.who.id)
            }
        };
        let (before, _) = self
            .ws
            .collect_until(&format!("its own event on {own_path}"), WAIT, |v| {
                v["path"] == own_path && v["type"] == "event"
            })
            .await;
        assert_none_on(&before, refused, self.name);
        assert_none_on(&self.ws.ping_round_trip().await, refused, self.name);
    }
}

#[tokio::test]
async fn realtime_every_path_is_for_its_members_and_admin_only() {
    let app = quiet_app(&[]).await;
    let a = greenhouse(&app).await;
    let b = greenhouse_by(&app, &a.admin).await;
    let dev_a = create_device(&app, &a.owner, a.grower_id, "a-sensor").await;
    let dev_b = create_device(&app, &b.owner, b.grower_id, "b-sensor").await;
    temp_rule(&app, &a.owner, a.grower_id).await;
    let viewer = user_with_role(&app, "viewer", "GROWER").await;
    json_of(add_member(&app, &a.admin, a.grower_id, viewer.id, "MEMBER").await, 201).await;
    let joiner = user_with_role(&app, "joiner", "GROWER").await;
    json_of(add_member(&app, &a.admin, a.grower_id, joiner.id, "MEMBER").await, 201).await;
    let goods = product(&app, &open_shop_by(&app, &a.admin).await, "4.50", 10_000).await;
    let c1 = register(&app, "buyer").await;
    let c2 = register(&app, "other-buyer").await;

    // Readers: index 0 admin, 1 owner of A, 2 member of A, 3 customer c1.
    let mut readers: Vec<(&str, WsClient)> = Vec::new();
    for (name, who) in [("admin", &a.admin), ("owner A", &a.owner), ("member A", &viewer), ("customer c1", &c1)] {
        readers.push((name, WsClient::authed(&app, &who.access).await.named(name)));
    }
    // Intruders: 0 the owner of grower B, 1 another customer.
    let mut intruders = [
        Intruder::new(&app, "owner B", &b.owner, Own::Desired(dev_b.id)).await,
        Intruder::new(&app, "customer c2", &c2, Own::Orders(goods)).await,
    ];

    let t0 = base();
    let mut joiner_ws = None;
    let mut order_id = String::new();
    let cases = [
        (Kind::Live, live(dev_a.id), vec![0, 1, 2]),
        (Kind::Desired, desired(dev_a.id), vec![0, 1, 2]),
        (Kind::Reported, reported(dev_a.id), vec![0, 1, 2]),
        (Kind::Alerts, alerts(a.grower_id), vec![0, 1, 2]),
        (Kind::Presence, presence(a.grower_id), vec![0, 1, 2]),
        (Kind::Orders, orders(c1.id), vec![0, 3]),
    ];
    for (kind, path, allowed) in cases {
        // Those allowed get a snapshot of the current state.
        let mut snapshot_ids = Vec::new();
        for &i in &allowed {
            let (name, ws) = &mut readers[i];
            let snap = ws.snapshot(&path).await;
            let d = &snap["data"];
            match kind {
                Kind::Live => {
                    assert_eq!(d["deviceId"], dev_a.id.to_string(), "{name}: {snap}");
                    assert!(d["reported"].is_object(), "{name}: {snap}");
                }
                Kind::Desired => {
                    assert_eq!(*d, json!({ "deviceId": dev_a.id, "desired": {}, "desiredVersion": 0 }), "{name}");
                }
                Kind::Reported => {
                    assert_eq!(d["deviceId"], dev_a.id.to_string(), "{name}: {snap}");
                    // The previous case asked for desired version 1; nothing reported yet.
                    assert_eq!(d["inSync"], false, "{name}: {snap}");
                    assert!(d["reportedAt"].is_null(), "{name}: {snap}");
                }
                Kind::Alerts => assert_eq!(d["alerts"], json!([]), "{name}: {snap}"),
                Kind::Presence => {
                    assert_eq!(member_entry(&snap, a.owner.id)["online"], true, "{name}: {snap}");
                    assert_eq!(member_entry(&snap, viewer.id)["online"], true, "{name}: {snap}");
                    assert_eq!(member_entry(&snap, joiner.id)["online"], false, "{name}: {snap}");
                }
                Kind::Orders => assert_eq!(d["orders"], json!([]), "{name}: {snap}"),
            }
            snapshot_ids.push(id_of(&snap));
        }
        // Everyone else is refused, by name of the path.
        for intruder in intruders.iter_mut() {
            intruder.ws.subscribe(&path).await;
            let err = intruder.ws.expect_error(&path, "forbidden").await;
            assert_eq!(err["path"], path.as_str(), "{}: {err}", intruder.name);
        }

        // A change on the path.
        match kind {
            Kind::Live => {
                send_readings(&app, &device_auth(&dev_a), &[reading(dev_a.id, "t", 20.5, at(t0, 0))]).await;
            }
            Kind::Desired => {
                put_desired(&app, &a.owner, dev_a.id, json!({ "fan": "on" })).await;
            }
            Kind::Reported => {
                report_ok(&app, &dev_a, json!({ "fan": "on", "desiredVersion": 1 })).await;
            }
            Kind::Alerts => {
                send_readings(&app, &bearer(&a.owner), &[reading(dev_a.id, "temp", 35.0, at(t0, 1))]).await;
                app.run_jobs().await;
            }
            Kind::Presence => joiner_ws = Some(WsClient::authed(&app, &joiner.access).await),
            Kind::Orders => order_id = place_order(&app, &c1, goods).await["id"].as_str().unwrap().to_string(),
        }

        // Those allowed get it, as the very next id.
        for (&i, snap_id) in allowed.iter().zip(snapshot_ids) {
            let (name, ws) = &mut readers[i];
            let ev = ws.expect_event(&path).await;
            assert_eq!(id_of(&ev), snap_id + 1, "{name}: {ev}");
            let d = &ev["data"];
            match kind {
                Kind::Live => {
                    assert_eq!(d["deviceId"], dev_a.id.to_string(), "{name}: {ev}");
                    assert_eq!(d["readings"][0]["value"], 20.5, "{name}: {ev}");
                }
                Kind::Desired => {
                    assert_eq!(*d, json!({ "deviceId": dev_a.id, "desired": { "fan": "on" }, "desiredVersion": 1 }));
                }
                Kind::Reported => {
                    assert_eq!(d["deviceId"], dev_a.id.to_string(), "{name}: {ev}");
                    assert_eq!(d["reportedVersion"], 1, "{name}: {ev}");
                    assert_eq!(d["inSync"], true, "{name}: {ev}");
                }
                Kind::Alerts => {
                    assert_eq!(d["change"], "created", "{name}: {ev}");
                    assert_eq!(d["alert"]["status"], "active", "{name}: {ev}");
                }
                Kind::Presence => {
                    assert_eq!(d["userId"], joiner.id.to_string(), "{name}: {ev}");
                    assert_eq!(d["online"], true, "{name}: {ev}");
                }
                Kind::Orders => {
                    assert_eq!(d["change"], "created", "{name}: {ev}");
                    assert_eq!(d["order"]["id"], order_id.as_str(), "{name}: {ev}");
                }
            }
        }
        // The refused see nothing of it.
        for intruder in intruders.iter_mut() {
            intruder.assert_saw_nothing_of(&app, &path).await;
        }
    }
    drop(joiner_ws);

    // Malformed paths are invalid; paths of things that do not exist (or were deleted) are
    // refused.
    let nobody = Uuid::now_v7();
    let deleted = create_device(&app, &a.owner, a.grower_id, "short-lived").await;
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", deleted.id), &a.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let invalid = [
        "/nope".to_string(),
        "/live/sensors/not-a-uuid".to_string(),
        "/live/sensors".to_string(),
        format!("/live/sensors/{}/extra", dev_a.id),
        format!("/controls/{}/elsewhere", dev_a.id),
        "/alerts/12345".to_string(),
        "/presence/".to_string(),
        "/orders/not-a-user".to_string(),
    ];
    let not_found =
        [live(nobody), desired(nobody), reported(nobody), alerts(nobody), presence(nobody), live(deleted.id)];
    // ADMIN is told `not_found`; anyone else `forbidden`, exactly as for another grower's
    // things, so ids cannot be probed.
    for (i, missing) in [(0, "not_found"), (1, "forbidden")] {
        let (name, ws) = &mut readers[i];
        for p in &invalid {
            ws.subscribe(p).await;
            let err = ws.expect_error(p, "invalid").await;
            assert_eq!(err["path"], p.as_str(), "{name}: {err}");
        }
        for p in &not_found {
            ws.subscribe(p).await;
            ws.expect_error(p, missing).await;
        }
        assert!(ws.ping_round_trip().await.is_empty(), "{name}: one error per refused path, nothing else");
    }
    // A customer's orders are theirs: another customer's id is forbidden, not an empty list.
    let (_, c1_ws) = &mut readers[3];
    c1_ws.subscribe(&orders(c2.id)).await;
    c1_ws.expect_error(&orders(c2.id), "forbidden").await;
}

#[tokio::test]
async fn realtime_sse_refuses_a_forbidden_path_inside_the_stream() {
    let app = quiet_app(&[]).await;
    let a = greenhouse(&app).await;
    let b = greenhouse_by(&app, &a.admin).await;
    let dev_a = create_device(&app, &a.owner, a.grower_id, "a").await;
    let dev_b = create_device(&app, &b.owner, b.grower_id, "b").await;
    let (mine, theirs) = (desired(dev_b.id), desired(dev_a.id));

    let mut sse = SseClient::authed(&app, &[&mine, &theirs], &b.owner.access).await;
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(sse.next_message(WAIT).await.1);
    }
    let err = first.iter().find(|m| m["path"] == theirs.as_str()).unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "forbidden", "{err}");
    let snap = first.iter().find(|m| m["path"] == mine.as_str()).unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(snap["type"], "snapshot", "{snap}");

    // A change on the refused path, then on the own one: only the own one arrives.
    put_desired(&app, &a.owner, dev_a.id, json!({ "fan": "on" })).await;
    put_desired(&app, &b.owner, dev_b.id, json!({ "fan": "off" })).await;
    let (_, ev) = sse.next_message(WAIT).await;
    assert_eq!(ev["path"], mine.as_str(), "nothing of the refused path: {ev}");
    assert_eq!(ev["data"]["desiredVersion"], 1);
}
