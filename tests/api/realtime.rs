//! docs/realtime.md (and CONTRACT.md "Realtime"): path subscriptions over WebSocket and SSE,
//! driven by real clients (`helpers/rt_client.rs`) against the real application. Authentication and
//! its refusals, every path's authorization across growers and customers, snapshot-then-live
//! with consecutive ids (also while writes race the subscription), each source of events
//! (HTTP and MQTT telemetry, desired and reported state, alerts, orders, presence), resume and
//! reset, token expiry and re-auth, revocation, presence (across restarts, and of a dead
//! client), the slow-consumer cut-off, limits, keep-alive, shutdown, and two instances over
//! Redis.
//!
//! Waits are bounded by generous timeouts (`WAIT`), never asserted on. "Nothing arrived" is
//! shown without sleeping: ids on a path increase by exactly one per event, so the next event
//! after a no-op names the id that follows; or a later event caused on another path, plus a
//! ping round trip, arrives with nothing of the refused path before it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{
        Account, PASSWORD, admin, authed, json_of, jwt_part, login_ok, refresh_ok, register, sid, user_with_role,
    },
    alerts::{alert_action, new_rule},
    assert_error,
    greenhouse::{
        Greenhouse, add_member, bearer, create_device, device_auth, greenhouse, greenhouse_by, reading, report_ok,
        send_readings,
    },
    quiet_app,
    rt_client::{SSE_PATH, SseAuth, SseClient, WAIT, WsClient, WsNext, id_of, sse_request, sse_url},
    shop::{create_category, create_product, items, pay, place, product_body},
    ts_of, two_instances_on_redis,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A longer bound, for what waits on token expiry or idle timeouts.
const LONG_WAIT: Duration = Duration::from_secs(25);

fn live(device: Uuid) -> String {
    format!("/live/sensors/{device}")
}

fn desired(device: Uuid) -> String {
    format!("/controls/{device}/desired")
}

fn reported(device: Uuid) -> String {
    format!("/controls/{device}/reported")
}

fn alerts(grower: Uuid) -> String {
    format!("/alerts/{grower}")
}

fn presence(grower: Uuid) -> String {
    format!("/presence/{grower}")
}

fn orders(user: Uuid) -> String {
    format!("/orders/{user}")
}

/// A base for reading timestamps: half an hour ago, so offsets stay in the accepted window.
fn base() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(30)
}

fn at(base: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    base + chrono::Duration::milliseconds(ms)
}

fn micros(v: &Value) -> i64 {
    ts_of(v).timestamp_micros()
}

fn assert_timestamp(v: &Value) {
    micros(v);
}

/// Readings as `(metric, ts µs, value)`, sorted: from what was posted (of one device) or from
/// an event's `data.readings`.
fn triples<'a>(items: impl IntoIterator<Item = &'a Value>) -> Vec<(String, i64, f64)> {
    let mut out: Vec<(String, i64, f64)> = items
        .into_iter()
        .map(|r| {
            let metric = r["metric"].as_str().unwrap_or_else(|| panic!("metric: {r}")).to_string();
            let value = r["value"].as_f64().unwrap_or_else(|| panic!("value: {r}"));
            (metric, micros(&r["ts"]), value)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

fn event_readings(ev: &Value) -> Vec<(String, i64, f64)> {
    triples(ev["data"]["readings"].as_array().unwrap_or_else(|| panic!("data.readings: {ev}")))
}

fn sent_for(items: &[Value], device: Uuid) -> Vec<(String, i64, f64)> {
    triples(items.iter().filter(|r| r["deviceId"] == device.to_string()))
}

async fn put_desired(app: &TestApp, who: &Account, device: Uuid, doc: Value) -> Value {
    let res = authed(app, Method::PUT, &format!("/api/v1/devices/{device}/desired"), &who.access)
        .json(&doc)
        .send()
        .await
        .unwrap();
    json_of(res, 200).await
}

/// A threshold rule on `temp > 30` for the grower.
async fn temp_rule(app: &TestApp, who: &Account, grower: Uuid) -> Value {
    let body = json!({ "growerId": grower, "metric": "temp", "kind": "threshold", "op": "gt",
                       "threshold": 30.0, "severity": "critical", "enabled": true });
    new_rule(app, who, body).await
}

/// A category and a product with plenty of stock; returns the product id.
async fn product(app: &TestApp, admin: &Account) -> Uuid {
    let category = create_category(app, admin, &format!("Seeds {}", Uuid::now_v7().simple())).await;
    let sku = format!("SKU-{}", Uuid::now_v7().simple());
    let body = product_body(&sku, &format!("Basil {sku}"), "4.50", 10_000, category);
    create_product(app, admin, body).await["id"].as_str().unwrap().parse().unwrap()
}

/// `POST /orders` of one item with an `Idempotency-Key` (201 asserted).
async fn place_order(app: &TestApp, who: &Account, product: Uuid) -> Value {
    let key = Uuid::now_v7().to_string();
    json_of(place(app, &who.access, &json!({ "items": items(&[(product, 1)]) }), Some(&key)).await, 201).await
}

async fn cancel_order(app: &TestApp, who: &Account, id: &str) -> Value {
    let res = authed(app, Method::POST, &format!("/api/v1/orders/{id}/cancel"), &who.access).send().await.unwrap();
    json_of(res, 200).await
}

/// Whether `/metrics` shows a slow-consumer disconnect (any series of
/// `realtime_disconnects_total` whose labels mention "slow", with a value above 0).
async fn slow_consumer_counted(app: &TestApp) -> bool {
    let text = app.get("/metrics").await.text().await.unwrap_or_default();
    text.lines().any(|l| {
        l.starts_with("realtime_disconnects_total{")
            && l.contains("slow")
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0)
    })
}

/// The presence entry of `user` in a `/presence` snapshot.
fn member_entry(snapshot: &Value, user: Uuid) -> Value {
    let members = snapshot["data"]["members"].as_array().unwrap_or_else(|| panic!("data.members: {snapshot}"));
    members
        .iter()
        .find(|m| m["userId"] == user.to_string())
        .unwrap_or_else(|| panic!("{user} listed in {snapshot}"))
        .clone()
}

/// Asserts `msgs` hold nothing on `path`.
fn assert_none_on(msgs: &[Value], path: &str, who: &str) {
    for m in msgs {
        assert_ne!(m["path"], path, "{who} received a message on a path it was refused: {m}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_websocket_accepts_a_query_token_or_a_first_auth_message() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    // `?access_token=`: subscriptions work straight away.
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"]["deviceId"], dev.id.to_string(), "{snap}");

    // A first `auth` message: `auth_ok` with the user and when the token expires.
    let mut ws = WsClient::connect(&app, None).await;
    let ok = ws.auth(&g.owner.access).await;
    assert_eq!(ok["userId"], g.owner.id.to_string(), "{ok}");
    let expires = micros(&ok["expiresAt"]);
    assert!(expires > Utc::now().timestamp_micros(), "expiresAt in the future: {ok}");
    assert_eq!(expires / 1_000_000, jwt_part(&g.owner.access, 1)["exp"].as_i64().unwrap(), "the token's exp: {ok}");
    let snap = ws.snapshot(&path).await;
    assert_eq!(snap["data"]["desiredVersion"], 0, "{snap}");

    // Subscribing before authenticating is refused with an error, and gives no snapshot.
    let mut ws = WsClient::connect(&app, None).await.named("unauthenticated");
    ws.subscribe(&path).await;
    let err = ws.next_json(WAIT).await;
    assert_eq!(err["type"], "error", "subscribe before auth: {err}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{err}");
    let ok = ws.auth(&g.owner.access).await;
    assert_eq!(ok["userId"], g.owner.id.to_string());
    // The refused subscription was not made: only an explicit one gives a snapshot.
    assert_none_on(&ws.ping_round_trip().await, &path, "unauthenticated");
    ws.snapshot(&path).await;

    // An SSE stream takes the token as a query parameter or as a Bearer header.
    for auth in [SseAuth::Query(&g.owner.access), SseAuth::Bearer(&g.owner.access)] {
        let mut sse = SseClient::connect(app.addr, &[&path], auth, None).await;
        let (id, snap) = sse.next_on(&path, WAIT).await;
        assert_eq!(snap["type"], "snapshot", "{auth:?}: {snap}");
        assert_eq!(snap["data"]["deviceId"], dev.id.to_string());
        assert_eq!(id.as_deref(), Some(snap["id"].as_str().unwrap()), "one path: the cursor is its id");
    }
}

#[tokio::test]
async fn realtime_refuses_a_missing_late_or_bad_token() {
    let app = quiet_app(&[("REALTIME_AUTH_TIMEOUT_SECS", "1")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    // No token and no `auth` message within REALTIME_AUTH_TIMEOUT_SECS: 4001.
    let mut ws = WsClient::connect(&app, None).await.named("silent");
    let (code, _) = ws.expect_close(WAIT).await;
    assert_eq!(code, 4001, "no auth in time");

    // A bad token, in the query or in the `auth` message: 4001.
    // A token whose signature was changed (its first character, which carries six full bits).
    let mut parts: Vec<String> = g.owner.access.split('.').map(str::to_string).collect();
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2] = format!("{flipped}{}", &parts[2][1..]);
    let tampered = parts.join(".");
    for bad in ["not-a-token", tampered.as_str()] {
        let mut ws = WsClient::connect(&app, Some(bad)).await.named("bad query token");
        let (code, _) = ws.expect_close(WAIT).await;
        assert_eq!(code, 4001, "query token {bad:?}");
        let mut ws = WsClient::connect(&app, None).await.named("bad auth message");
        ws.send_json(json!({ "type": "auth", "token": bad })).await;
        let (msgs, (code, _)) = ws.messages_until_close(WAIT).await;
        assert_eq!(code, 4001, "auth message {bad:?}");
        assert!(msgs.iter().all(|m| m["type"] != "auth_ok"), "{msgs:?}");
    }

    // The token of a session that was logged out is no token.
    let gone = login_ok(&app, &g.owner.email, PASSWORD).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refreshToken": gone.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let mut ws = WsClient::connect(&app, Some(&gone.access)).await.named("logged out");
    let (msgs, (code, _)) = ws.messages_until_close(WAIT).await;
    assert_eq!(code, 4001, "a revoked session's token: {msgs:?}");

    // SSE: 401 with the error body before any stream.
    for auth in [SseAuth::None, SseAuth::Query("not-a-token"), SseAuth::Bearer(&tampered), SseAuth::Query(&gone.access)]
    {
        let res = sse_request(app.addr, &[&path], auth, None).await;
        assert_error(res, 401, SSE_PATH).await;
    }
}

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
    let goods = product(&app, &a.admin).await;
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

// ---------------------------------------------------------------------------------------------
// 3. Snapshot, then every event, none twice
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_live_sensors_snapshot_then_one_event_per_device_per_batch() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "sensor").await;
    let dev2 = create_device(&app, &g.owner, g.grower_id, "sensor-2").await;
    let (path, path2) = (live(dev.id), live(dev2.id));
    let t0 = base();

    let first = [
        reading(dev.id, "t", 20.0, at(t0, 0)),
        reading(dev.id, "rh", 70.0, at(t0, 0)),
        reading(dev.id, "t", 21.0, at(t0, 1000)),
    ];
    assert_eq!(send_readings(&app, &device_auth(&dev), &first).await, (3, 0));

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    let s = id_of(&snap);
    let reported = &snap["data"]["reported"];
    assert_eq!(snap["data"]["deviceId"], dev.id.to_string());
    assert_eq!(reported["t"]["value"], 21.0, "the latest value per metric: {snap}");
    assert_eq!(micros(&reported["t"]["ts"]), micros(&first[2]["ts"]), "{snap}");
    assert_eq!(reported["rh"]["value"], 70.0, "{snap}");
    let snap2 = ws.snapshot(&path2).await;
    assert_eq!(snap2["data"]["reported"], json!({}), "no readings yet: {snap2}");
    let s2 = id_of(&snap2);

    // Each batch: one event with exactly its readings, ids one by one.
    let mut batches = Vec::new();
    for n in 1..=4_i64 {
        let batch = vec![
            reading(dev.id, "t", 21.0 + n as f64, at(t0, 1000 + n * 1000)),
            reading(dev.id, "rh", 70.0 - n as f64, at(t0, 1000 + n * 1000)),
        ];
        assert_eq!(send_readings(&app, &device_auth(&dev), &batch).await, (2, 0));
        batches.push(batch);
    }
    for (n, batch) in batches.iter().enumerate() {
        let ev = ws.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + 1 + n as u64, "{ev}");
        assert_eq!(ev["data"]["deviceId"], dev.id.to_string(), "{ev}");
        assert_eq!(event_readings(&ev), sent_for(batch, dev.id), "{ev}");
    }

    // One batch for two devices: one event on each device's path, with that device's readings.
    let both = vec![
        reading(dev.id, "t", 30.0, at(t0, 10_000)),
        reading(dev2.id, "t", 40.0, at(t0, 10_000)),
        reading(dev2.id, "rh", 41.0, at(t0, 10_000)),
    ];
    assert_eq!(send_readings(&app, &bearer(&g.owner), &both).await, (3, 0));
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 5, "{ev}");
    assert_eq!(event_readings(&ev), sent_for(&both, dev.id), "{ev}");
    let ev2 = ws.expect_event(&path2).await;
    assert_eq!(id_of(&ev2), s2 + 1, "{ev2}");
    assert_eq!(ev2["data"]["deviceId"], dev2.id.to_string(), "{ev2}");
    assert_eq!(event_readings(&ev2), sent_for(&both, dev2.id), "{ev2}");

    // A resent batch is all duplicates: no event. Half new: an event with only the new half.
    assert_eq!(send_readings(&app, &device_auth(&dev), &batches[0]).await, (0, 2));
    let mut mixed = batches[1].clone();
    let fresh = reading(dev.id, "t", 50.0, at(t0, 20_000));
    mixed.push(fresh.clone());
    assert_eq!(send_readings(&app, &device_auth(&dev), &mixed).await, (1, 2));
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 6, "the all-duplicate batch published nothing: {ev}");
    assert_eq!(event_readings(&ev), triples([&fresh]), "only the accepted reading: {ev}");
    // A batch with only duplicates for one device and new readings for the other: an event
    // for the other only.
    let split = vec![fresh.clone(), reading(dev2.id, "t", 42.0, at(t0, 30_000))];
    assert_eq!(send_readings(&app, &bearer(&g.owner), &split).await, (1, 1));
    let ev2 = ws.expect_event(&path2).await;
    assert_eq!(id_of(&ev2), s2 + 2, "{ev2}");
    assert_eq!(event_readings(&ev2), sent_for(&split, dev2.id), "{ev2}");
    // Nothing more for either device.
    let rest = ws.ping_round_trip().await;
    assert!(rest.is_empty(), "nothing else was published: {rest:?}");
}

/// A writer task that calls `write(i)` for i = 1, 2, … until told to stop (or 2000 writes);
/// `posted` is the last i written, and the task returns it.
fn spawn_writer<F, Fut>(posted: Arc<AtomicU64>, stop: Arc<AtomicBool>, write: F) -> tokio::task::JoinHandle<u64>
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) && i < 2000 {
            i += 1;
            write(i).await;
            posted.store(i, Ordering::SeqCst);
        }
        i
    })
}

/// Waits until the writer has written at least `n` times.
async fn wait_posted(posted: &AtomicU64, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while posted.load(Ordering::SeqCst) < n {
        assert!(tokio::time::Instant::now() < deadline, "the writer is stuck");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn realtime_a_subscription_racing_telemetry_misses_nothing_and_repeats_nothing() {
    let app = quiet_app(&[]).await;
    race_telemetry(&app, &app).await;
}

#[tokio::test]
async fn realtime_a_subscription_on_one_instance_racing_telemetry_to_another_misses_nothing() {
    let (a, b, _dir) = two_instances_on_redis(&[("JOB_CONCURRENCY", "0")]).await;
    race_telemetry(&a, &b).await;
}

/// Readings posted to `writes` one per batch while a client subscribes on `reads`.
async fn race_telemetry(writes: &TestApp, reads: &TestApp) {
    let g = greenhouse(writes).await;
    let dev = create_device(writes, &g.owner, g.grower_id, "racer").await;
    let path = live(dev.id);
    let t0 = base();
    let app = writes;

    // A writer posts one reading per batch, value = its index, as fast as it can, until the
    // subscriber has seen enough: the subscription is made while it writes.
    let (posted, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (client, url, auth, device) =
        (app.client.clone(), app.url("/api/v1/telemetry/batch"), device_auth(&dev), dev.id);
    let writer = spawn_writer(posted.clone(), stop.clone(), move |i| {
        let req = client.post(&url).header("authorization", &auth).json(&json!([reading(
            device,
            "seq",
            i as f64,
            at(t0, i as i64)
        )]));
        async move { assert_eq!(req.send().await.unwrap().status(), 202) }
    });
    wait_posted(&posted, 10).await;
    let mut ws = WsClient::authed(reads, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    let s = id_of(&snap);
    let covered = snap["data"]["reported"]["seq"]["value"].as_f64().unwrap_or_else(|| panic!("{snap}")) as u64;

    // After 20 events the writer is stopped; then every event up to its last write arrives.
    let mut values: Vec<u64> = Vec::new();
    let mut writer = Some(writer);
    let mut last: Option<u64> = None;
    while last.is_none() || values.last() != last.as_ref() {
        let ev = ws.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + 1 + values.len() as u64, "ids follow one by one from the snapshot's: {ev}");
        let readings = ev["data"]["readings"].as_array().unwrap_or_else(|| panic!("{ev}"));
        assert_eq!(readings.len(), 1, "one reading per batch: {ev}");
        values.push(readings[0]["value"].as_f64().unwrap() as u64);
        if values.len() == 20 {
            stop.store(true, Ordering::SeqCst);
            last = Some(writer.take().unwrap().await.unwrap());
        }
    }
    // The events continue the snapshot with no gap (a change that committed during the
    // snapshot read may show in both), and each reading arrives once, in order.
    assert!(values[0] <= covered + 1, "a gap after the snapshot (covers {covered}): {values:?}");
    for w in values.windows(2) {
        assert_eq!(w[1], w[0] + 1, "consecutive, none repeated: {values:?}");
    }
    assert!(ws.ping_round_trip().await.is_empty(), "nothing after the last");
}

#[tokio::test]
async fn realtime_a_subscription_racing_desired_changes_gets_each_later_version_once() {
    let app = quiet_app(&[]).await;
    race_desired(&app, &app).await;
}

#[tokio::test]
async fn realtime_a_subscription_on_one_instance_racing_desired_changes_on_another_gets_each_version_once() {
    let (a, b, _dir) = two_instances_on_redis(&[("JOB_CONCURRENCY", "0")]).await;
    race_desired(&a, &b).await;
}

/// Desired documents PUT to `writes` one after another while a client subscribes on `reads`.
async fn race_desired(writes: &TestApp, reads: &TestApp) {
    let app = writes;
    let g = greenhouse(app).await;
    let dev = create_device(app, &g.owner, g.grower_id, "racer").await;
    let path = desired(dev.id);

    let (posted, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (client, url, token) =
        (app.client.clone(), app.url(&format!("/api/v1/devices/{}/desired", dev.id)), g.owner.access.clone());
    let writer = spawn_writer(posted.clone(), stop.clone(), move |i| {
        let req = client.put(&url).bearer_auth(&token).json(&json!({ "step": i }));
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    });
    wait_posted(&posted, 5).await;
    let mut ws = WsClient::authed(reads, &g.owner.access).await;
    let snap = ws.snapshot(&path).await;
    let s = id_of(&snap);
    let v0 = snap["data"]["desiredVersion"].as_u64().unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(snap["data"]["desired"], json!({ "step": v0 }), "the snapshot is one consistent state: {snap}");

    // Versions the snapshot covers are folded into it: the events are exactly the later
    // versions, one by one, with ids one by one.
    let mut writer = Some(writer);
    let mut last: Option<u64> = None;
    let mut n = 0;
    while last.is_none() || Some(v0 + n) != last {
        let ev = ws.expect_event(&path).await;
        n += 1;
        assert_eq!(id_of(&ev), s + n, "{ev}");
        assert_eq!(ev["data"]["desiredVersion"], v0 + n, "no version covered by the snapshot, none skipped: {ev}");
        assert_eq!(ev["data"]["desired"], json!({ "step": v0 + n }), "{ev}");
        if n == 10 {
            stop.store(true, Ordering::SeqCst);
            last = Some(writer.take().unwrap().await.unwrap());
        }
    }
    assert!(ws.ping_round_trip().await.is_empty(), "nothing after the last");
}

/// Publishes one QoS 1 message to the machine's broker (127.0.0.1:1883) as `client_id` and waits
/// for its PUBACK; with no message, only connects (a clean session: the broker forgets the
/// stored session of `client_id`).
async fn mqtt_publish(client_id: &str, message: Option<(&str, String)>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", 1883);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(opts, 10);
    if let Some((topic, payload)) = &message {
        client.publish(*topic, QoS::AtLeastOnce, false, payload.clone()).await.expect("queue publish");
    }
    let done = tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(Event::Incoming(Packet::ConnAck(_))) if message.is_none() => break,
                Ok(_) => {}
                Err(e) => panic!("MQTT broker on 127.0.0.1:1883: {e}"),
            }
        }
    });
    done.await.expect("the broker answers");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(ev) = el.poll().await {
            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn realtime_readings_from_mqtt_are_published_like_http_ones() {
    let client_id = format!("mash-test-rt-{}", Uuid::now_v7().simple());
    let mut app = quiet_app(&[("MQTT_URL", "mqtt://127.0.0.1:1883"), ("MQTT_CLIENT_ID", client_id.as_str())]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "mqtt sensor").await;
    let path = live(dev.id);
    let topic = format!("mash/devices/{}/telemetry", dev.id);
    let t0 = base();

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    // The app's subscriber may still be connecting: publish the same reading until its event
    // arrives (later copies are duplicates and publish nothing).
    let first =
        json!([{ "metric": "t", "value": 19.5, "ts": at(t0, 0).to_rfc3339_opts(chrono::SecondsFormat::Micros, true) }]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ev = loop {
        mqtt_publish(&format!("{client_id}-pub"), Some((&topic, first.to_string()))).await;
        match ws.recv(Duration::from_secs(1)).await {
            WsNext::Json(v) if v["path"] == path.as_str() => break v,
            WsNext::Json(v) => panic!("unexpected {v}"),
            WsNext::Closed(c) => panic!("closed: {c:?}"),
            WsNext::TimedOut => assert!(tokio::time::Instant::now() < deadline, "no event for MQTT readings"),
        }
    };
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 1), "{ev}");
    assert_eq!(ev["data"]["deviceId"], dev.id.to_string(), "{ev}");
    assert_eq!(event_readings(&ev), triples(first.as_array().unwrap()), "{ev}");

    let second = json!([{ "metric": "t", "value": 20.5, "ts": at(t0, 1).to_rfc3339_opts(chrono::SecondsFormat::Micros, true) },
                        { "metric": "rh", "value": 60.0, "ts": at(t0, 1).to_rfc3339_opts(chrono::SecondsFormat::Micros, true) }]);
    mqtt_publish(&format!("{client_id}-pub"), Some((&topic, second.to_string()))).await;
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2, "the repeated copies published nothing: {ev}");
    assert_eq!(event_readings(&ev), triples(second.as_array().unwrap()), "{ev}");

    app.begin_shutdown().await.expect("server task").expect("server stopped");
    mqtt_publish(&client_id, None).await;
}

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
    let goods = product(&app, &boss).await;
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

// ---------------------------------------------------------------------------------------------
// 8. Resume and reset
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_resume_sends_exactly_the_missed_events() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let dev2 = create_device(&app, &g.owner, g.grower_id, "controller-2").await;
    let path = desired(dev.id);

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    for v in 1..=5 {
        put_desired(&app, &g.owner, dev.id, json!({ "step": v })).await;
        assert_eq!(id_of(&ws.expect_event(&path).await), s + v);
    }
    ws.close().await;

    // WebSocket: `since` two events back gives exactly the three after it, no snapshot.
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    ws.subscribe_since(&path, &(s + 2).to_string()).await;
    for v in 3..=5 {
        let ev = ws.next_on(&path, WAIT).await;
        assert_eq!(ev["type"], "event", "a resume sends events, not a snapshot: {ev}");
        assert_eq!(id_of(&ev), s + v, "{ev}");
        assert_eq!(ev["data"]["desiredVersion"], v, "{ev}");
    }
    put_desired(&app, &g.owner, dev.id, json!({ "step": 6 })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 6, "then live");
    // `since` the latest id: nothing is missed, nothing is sent until the next change.
    let mut up_to_date = WsClient::authed(&app, &g.owner.access).await;
    up_to_date.subscribe_since(&path, &(s + 6).to_string()).await;
    put_desired(&app, &g.owner, dev.id, json!({ "step": 7 })).await;
    let ev = up_to_date.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 7), "{ev}");
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 7);

    // SSE: the `id:` of each message is the cursor; `Last-Event-ID` resumes after it.
    let mut sse = SseClient::authed(&app, &[&path], &g.owner.access).await;
    let (cursor, snap) = sse.next_on(&path, WAIT).await;
    assert_eq!((snap["type"].as_str(), id_of(&snap)), (Some("snapshot"), s + 7), "{snap}");
    assert_eq!(cursor, Some((s + 7).to_string()));
    put_desired(&app, &g.owner, dev.id, json!({ "step": 8 })).await;
    let (cursor, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!(id_of(&ev), s + 8);
    assert_eq!(cursor, Some((s + 8).to_string()));
    drop(sse);
    for v in 9..=10 {
        put_desired(&app, &g.owner, dev.id, json!({ "step": v })).await;
    }
    let mut sse =
        SseClient::connect(app.addr, &[&path], SseAuth::Query(&g.owner.access), Some(&(s + 8).to_string())).await;
    for v in 9..=10 {
        let (cursor, ev) = sse.next_on(&path, WAIT).await;
        assert_eq!(ev["type"], "event", "{ev}");
        assert_eq!(id_of(&ev), s + v, "{ev}");
        assert_eq!(cursor, Some((s + v).to_string()));
    }
    drop(sse);
    // `?lastEventId=` does the same.
    let since = (s + 9).to_string();
    let url = sse_url(app.addr, &[("path", &path), ("access_token", &g.owner.access), ("lastEventId", &since)]);
    let res = reqwest::Client::new().get(url).send().await.unwrap();
    let mut sse = SseClient::from_response(res).await;
    let (_, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 10), "{ev}");
    drop(sse);

    // Several paths in one stream: the cursor has one id per path, in order, and resumes both.
    let path2 = desired(dev2.id);
    let mut sse = SseClient::authed(&app, &[&path, &path2], &g.owner.access).await;
    let mut cursor = None;
    let mut ids = [0u64; 2];
    for _ in 0..2 {
        let (c, m) = sse.next_message(WAIT).await;
        assert_eq!(m["type"], "snapshot", "{m}");
        let slot = if m["path"] == path.as_str() { 0 } else { 1 };
        ids[slot] = id_of(&m);
        cursor = c;
    }
    assert_eq!(cursor, Some(format!("{},{}", ids[0], ids[1])), "one id per path parameter, in order");
    drop(sse);
    put_desired(&app, &g.owner, dev.id, json!({ "step": 11 })).await;
    put_desired(&app, &g.owner, dev2.id, json!({ "x": 1 })).await;
    put_desired(&app, &g.owner, dev.id, json!({ "step": 12 })).await;
    let mut sse =
        SseClient::connect(app.addr, &[&path, &path2], SseAuth::Query(&g.owner.access), cursor.as_deref()).await;
    let mut got: Vec<(String, u64)> = Vec::new();
    let mut last_cursor = None;
    for _ in 0..3 {
        let (c, m) = sse.next_message(WAIT).await;
        assert_eq!(m["type"], "event", "resumed, no snapshot: {m}");
        got.push((m["path"].as_str().unwrap().to_string(), id_of(&m)));
        last_cursor = c;
    }
    got.sort();
    let mut expected = vec![(path.clone(), ids[0] + 1), (path.clone(), ids[0] + 2), (path2.clone(), ids[1] + 1)];
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(last_cursor, Some(format!("{},{}", ids[0] + 2, ids[1] + 1)));
}

#[tokio::test]
async fn realtime_resume_beyond_the_replay_buffer_or_from_nowhere_is_a_reset_and_a_snapshot() {
    let app = quiet_app(&[("REALTIME_REPLAY_EVENTS", "3")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    for v in 1..=5 {
        put_desired(&app, &g.owner, dev.id, json!({ "step": v })).await;
    }
    for v in 1..=5 {
        assert_eq!(id_of(&ws.expect_event(&path).await), s + v);
    }
    ws.close().await;

    // Three held: missing the last three is a replay...
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    ws.subscribe_since(&path, &(s + 2).to_string()).await;
    for v in 3..=5 {
        let ev = ws.next_on(&path, WAIT).await;
        assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + v), "{ev}");
    }
    ws.close().await;

    // ...missing five is a reset and a fresh snapshot, never a hole; so is an id never issued.
    // Every event here is one desired version, so the last id is `s + version`.
    let mut version = 5;
    for since in [s.to_string(), "1".to_string(), (s + 1000).to_string()] {
        let mut ws = WsClient::authed(&app, &g.owner.access).await;
        ws.subscribe_since(&path, &since).await;
        let reset = ws.next_on(&path, WAIT).await;
        assert_eq!(reset, json!({ "type": "reset", "path": path }), "since {since}");
        let snap = ws.expect_snapshot(&path).await;
        assert_eq!(id_of(&snap), s + version, "since {since}: {snap}");
        assert_eq!(snap["data"]["desiredVersion"], version, "{snap}");
        put_desired(&app, &g.owner, dev.id, json!({ "again": since })).await;
        version += 1;
        let ev = ws.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + version, "then live: {ev}");
        assert_eq!(ev["data"]["desiredVersion"], version, "{ev}");
        ws.close().await;
    }

    // SSE: the same reset for a `Last-Event-ID` too far back.
    let mut sse = SseClient::connect(app.addr, &[&path], SseAuth::Query(&g.owner.access), Some(&s.to_string())).await;
    let (_, reset) = sse.next_on(&path, WAIT).await;
    assert_eq!(reset, json!({ "type": "reset", "path": path }));
    let (cursor, snap) = sse.next_on(&path, WAIT).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(snap["data"]["desiredVersion"], version, "{snap}");
    assert_eq!(id_of(&snap), s + version, "{snap}");
    assert_eq!(cursor, Some(snap["id"].as_str().unwrap().to_string()));
}

// ---------------------------------------------------------------------------------------------
// 9. Token expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_websocket_token_expiry_holds_events_until_a_new_auth() {
    let app = quiet_app(&[("ACCESS_TOKEN_TTL_SECS", "2"), ("REALTIME_AUTH_GRACE_SECS", "60")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let session = login_ok(&app, &g.owner.email, PASSWORD).await;
    let mut ws = WsClient::authed(&app, &session.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 1 })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 1);

    let (skipped, expired) = ws.collect_until("auth_expired", LONG_WAIT, |v| v["type"] == "auth_expired").await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(expired["message"].as_str().is_some_and(|m| !m.is_empty()), "{expired}");

    // A change while expired is held, and delivered after a new `auth` for the same user.
    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 2 })).await;
    let renewed = refresh_ok(&app, &session).await;
    ws.send_json(json!({ "type": "auth", "token": renewed.access })).await;
    let (before, ok) = ws.collect_until("auth_ok", WAIT, |v| v["type"] == "auth_ok").await;
    assert!(before.iter().all(|m| m["type"] != "event"), "events are held while the token is expired: {before:?}");
    assert_eq!(ok["userId"], g.owner.id.to_string());
    let ev = ws.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2, "nothing lost: {ev}");
    assert_eq!(ev["data"]["desiredVersion"], 2);
    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 3 })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), s + 3, "and it goes on");
}

#[tokio::test]
async fn realtime_websocket_without_a_new_auth_after_expiry_is_closed_4001() {
    let app = quiet_app(&[("ACCESS_TOKEN_TTL_SECS", "2"), ("REALTIME_AUTH_GRACE_SECS", "1")]).await;
    let user = register(&app, "expiring").await;
    let mut ws = WsClient::authed(&app, &user.access).await;
    let expired = ws.next_of_type("auth_expired", LONG_WAIT).await;
    assert!(expired["message"].as_str().is_some_and(|m| !m.is_empty()), "{expired}");
    let (code, _) = ws.expect_close(WAIT).await;
    assert_eq!(code, 4001, "no new auth within the grace period");
}

#[tokio::test]
async fn realtime_sse_stream_ends_on_token_expiry_and_resumes_with_a_fresh_token() {
    let app = quiet_app(&[("ACCESS_TOKEN_TTL_SECS", "2")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let session = login_ok(&app, &g.owner.email, PASSWORD).await;
    let mut sse = SseClient::authed(&app, &[&path], &session.access).await;
    let (cursor, snap) = sse.next_on(&path, WAIT).await;
    assert_eq!(snap["type"], "snapshot");
    let s = id_of(&snap);
    let (_, expired) = sse.next_of_type("auth_expired", LONG_WAIT).await;
    assert!(expired["message"].is_string(), "{expired}");
    assert!(sse.ended(WAIT).await, "the stream ends after auth_expired");
    assert!(sse.skipped.is_empty(), "nothing after auth_expired: {:?}", sse.skipped);

    let writer = login_ok(&app, &g.admin.email, PASSWORD).await;
    put_desired(&app, &writer, dev.id, json!({ "v": 1 })).await;
    let fresh = refresh_ok(&app, &session).await;
    let mut sse = SseClient::connect(app.addr, &[&path], SseAuth::Bearer(&fresh.access), cursor.as_deref()).await;
    let (_, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 1), "missed nothing: {ev}");
}

// ---------------------------------------------------------------------------------------------
// 10. Revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_revoking_a_session_closes_its_connections_only() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);
    let email = g.owner.email.clone();
    let s1 = login_ok(&app, &email, PASSWORD).await;
    let s2 = login_ok(&app, &email, PASSWORD).await;
    let s3 = login_ok(&app, &email, PASSWORD).await;
    let s4 = login_ok(&app, &email, PASSWORD).await;

    let mut ws1 = WsClient::authed(&app, &s1.access).await.named("session 1");
    ws1.snapshot(&path).await;
    let mut sse1 = SseClient::authed(&app, &[&path], &s1.access).await;
    sse1.next_on(&path, WAIT).await;
    let mut ws2 = WsClient::authed(&app, &s2.access).await.named("session 2");
    ws2.snapshot(&path).await;

    // Logout of session 1: its socket is closed 4003, its stream ends with `revoked`.
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({ "refreshToken": s1.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (code, _) = ws1.expect_close(WAIT).await;
    assert_eq!(code, 4003, "logout closes the session's socket");
    let (_, err) = sse1.next_of_type("error", WAIT).await;
    assert_eq!(err["code"], "revoked", "{err}");
    assert!(sse1.ended(WAIT).await, "the stream ends");

    // Session 2 lives on.
    put_desired(&app, &g.owner, dev.id, json!({ "v": 1 })).await;
    assert_eq!(ws2.expect_event(&path).await["data"]["desiredVersion"], 1);

    // Deleting session 2 (from session 3) closes it.
    let res = authed(&app, Method::DELETE, &format!("/api/v1/auth/sessions/{}", sid(&s2.access)), &s3.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (code, _) = ws2.expect_close(WAIT).await;
    assert_eq!(code, 4003, "a deleted session's socket is closed");

    // A password change (from session 3) ends every other session: session 4's socket closes,
    // session 3's stays.
    let mut ws3 = WsClient::authed(&app, &s3.access).await.named("session 3");
    ws3.snapshot(&path).await;
    let mut ws4 = WsClient::authed(&app, &s4.access).await.named("session 4");
    ws4.snapshot(&path).await;
    let res = authed(&app, Method::POST, "/api/v1/users/me/password", &s3.access)
        .json(&json!({ "currentPassword": PASSWORD, "newPassword": "a brand new passphrase 42" }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "password change: {}", res.status());
    let (code, _) = ws4.expect_close(WAIT).await;
    assert_eq!(code, 4003);
    put_desired(&app, &g.admin, dev.id, json!({ "v": 2 })).await;
    assert_eq!(ws3.expect_event(&path).await["data"]["desiredVersion"], 2, "the changing session stays");

    // An admin disabling the user closes the rest.
    let res = authed(&app, Method::PATCH, &format!("/api/v1/users/{}", g.owner.id), &g.admin.access)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 200).await["disabled"], true);
    let (code, _) = ws3.expect_close(WAIT).await;
    assert_eq!(code, 4003, "a disabled user's socket is closed");
}

// ---------------------------------------------------------------------------------------------
// 11. Presence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_presence_counts_a_user_once_across_connections() {
    let app = quiet_app(&[("REALTIME_PING_SECS", "1")]).await;
    let g = greenhouse(&app).await;
    let watcher = user_with_role(&app, "watcher", "GROWER").await;
    json_of(add_member(&app, &g.admin, g.grower_id, watcher.id, "MEMBER").await, 201).await;
    let path = presence(g.grower_id);
    let user_a = g.owner.id;

    let mut b = WsClient::authed(&app, &watcher.access).await.named("B");
    let snap = b.snapshot(&path).await;
    assert_eq!(member_entry(&snap, user_a)["online"], false, "{snap}");
    assert_eq!(member_entry(&snap, watcher.id)["online"], true, "B's own connection counts: {snap}");
    let s = id_of(&snap);

    // A's first connection: online.
    let mut a1 = WsClient::authed(&app, &g.owner.access).await.named("A1");
    let ev = b.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 1);
    assert_eq!(ev["data"]["userId"], user_a.to_string(), "{ev}");
    assert_eq!(ev["data"]["online"], true, "{ev}");
    assert_timestamp(&ev["data"]["lastSeenAt"]);

    // A second connection, then closing the first: A stays online, nothing is published.
    let mut a2 = WsClient::authed(&app, &g.owner.access).await.named("A2");
    assert!(a2.ping_round_trip().await.is_empty());
    assert!(a1.ping_round_trip().await.is_empty());
    a1.close().await;
    let mut admin_ws = WsClient::authed(&app, &g.admin.access).await;
    let snap = admin_ws.snapshot(&path).await;
    assert_eq!(member_entry(&snap, user_a)["online"], true, "one connection left: {snap}");
    assert_eq!(id_of(&snap), s + 1, "no event for the second connection or the first close: {snap}");

    // Closing the last: offline at once, with when A was last seen.
    a2.close().await;
    let ev = b.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2, "{ev}");
    assert_eq!(ev["data"]["userId"], user_a.to_string());
    assert_eq!(ev["data"]["online"], false, "{ev}");
    assert_timestamp(&ev["data"]["lastSeenAt"]);
    let seen = admin_ws.next_on(&path, WAIT).await;
    assert_eq!((seen["type"].as_str(), id_of(&seen)), (Some("event"), s + 2), "{seen}");
    let mut late = WsClient::authed(&app, &g.admin.access).await;
    let snap = late.snapshot(&path).await;
    let entry = member_entry(&snap, user_a);
    assert_eq!(entry["online"], false, "{snap}");
    assert_eq!(micros(&entry["lastSeenAt"]), micros(&ev["data"]["lastSeenAt"]), "{snap}");

    // An SSE stream counts as a connection too.
    let sse = SseClient::authed(&app, &[&path], &g.owner.access).await;
    let ev = b.expect_event(&path).await;
    assert_eq!((id_of(&ev), &ev["data"]["online"]), (s + 3, &json!(true)), "{ev}");
    drop(sse);
    let ev = b.expect_event(&path).await;
    assert_eq!((id_of(&ev), &ev["data"]["online"]), (s + 4, &json!(false)), "{ev}");
    assert_eq!(ev["data"]["userId"], user_a.to_string());
}

#[tokio::test]
async fn realtime_last_seen_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let mut app = quiet_app(&[("MASH_DATA_DIR", &data_dir)]).await;
    let g = greenhouse(&app).await;
    let watcher = user_with_role(&app, "watcher", "GROWER").await;
    json_of(add_member(&app, &g.admin, g.grower_id, watcher.id, "MEMBER").await, 201).await;
    let path = presence(g.grower_id);

    let mut b = WsClient::authed(&app, &watcher.access).await;
    let s = id_of(&b.snapshot(&path).await);
    let a = WsClient::authed(&app, &g.owner.access).await;
    assert_eq!(id_of(&b.expect_event(&path).await), s + 1);
    a.close().await;
    let offline = b.expect_event(&path).await;
    assert_eq!((id_of(&offline), &offline["data"]["online"]), (s + 2, &json!(false)), "{offline}");
    let last_seen = micros(&offline["data"]["lastSeenAt"]);
    b.close().await;

    app.begin_shutdown().await.expect("server task").expect("server stopped");
    let again = app.spawn_sibling(&[("JOB_CONCURRENCY", "0"), ("MASH_DATA_DIR", &data_dir)]).await;
    let watcher = login_ok(&again, &watcher.email, PASSWORD).await;
    let mut b = WsClient::authed(&again, &watcher.access).await;
    let snap = b.snapshot(&path).await;
    let entry = member_entry(&snap, g.owner.id);
    assert_eq!(entry["online"], false, "{snap}");
    assert_eq!(micros(&entry["lastSeenAt"]), last_seen, "kept across the restart: {snap}");
}

#[tokio::test]
async fn realtime_a_dead_client_is_closed_and_goes_offline() {
    let app = quiet_app(&[("REALTIME_PING_SECS", "0.5"), ("REALTIME_IDLE_TIMEOUT_SECS", "2")]).await;
    let g = greenhouse(&app).await;
    let watcher = user_with_role(&app, "watcher", "GROWER").await;
    json_of(add_member(&app, &g.admin, g.grower_id, watcher.id, "MEMBER").await, 201).await;
    let path = presence(g.grower_id);

    let mut b = WsClient::authed(&app, &watcher.access).await.named("B");
    let s = id_of(&b.snapshot(&path).await);
    let a = WsClient::authed(&app, &g.owner.access).await.named("A");
    let ev = b.expect_event(&path).await;
    assert_eq!((id_of(&ev), &ev["data"]["online"]), (s + 1, &json!(true)), "{ev}");

    // A stops answering (no reads, so no pongs); B, which reads, stays.
    let stalled = a.stop_reading();
    let ev = b.expect_event(&path).await;
    assert_eq!(id_of(&ev), s + 2, "{ev}");
    assert_eq!(ev["data"]["userId"], g.owner.id.to_string(), "{ev}");
    assert_eq!(ev["data"]["online"], false, "{ev}");
    assert!(b.ping_round_trip().await.is_empty(), "B, which answers pings, is alive");
    // Reading again, A finds its connection closed: with 4000 when the close frame is still
    // readable (a dead client never reads it, so the connection may also just be gone).
    let mut a = stalled.resume();
    loop {
        match a.recv(WAIT).await {
            WsNext::Json(v) => assert_ne!(v["type"], "event", "{v}"),
            WsNext::Closed(Some((code, reason))) => {
                assert_eq!(code, 4000, "idle timeout: {reason}");
                break;
            }
            WsNext::Closed(None) => break,
            WsNext::TimedOut => panic!("A's connection is still open"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 12. Slow consumers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_a_slow_consumer_is_cut_off_and_the_others_get_everything() {
    // No server pings while the slow client is stalled: it would answer them on resuming, into a
    // socket the server may already have closed.
    let app =
        quiet_app(&[("REALTIME_QUEUE", "8"), ("REALTIME_PING_SECS", "600"), ("REALTIME_IDLE_TIMEOUT_SECS", "1200")])
            .await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "firehose").await;
    let path = live(dev.id);
    let t0 = base();

    let mut fast = WsClient::authed(&app, &g.owner.access).await.named("fast");
    let s = id_of(&fast.snapshot(&path).await);
    // The slow one has a small socket buffer, and stops reading after its snapshot.
    let mut slow = WsClient::connect_to(app.addr, Some(&g.owner.access), Some(4096)).await.named("slow");
    let slow_s = id_of(&slow.snapshot(&path).await);
    let slow = slow.stop_reading();

    // Big events (1000 readings each) until the server counts a slow consumer, or far more than
    // any socket buffers hold.
    const PER_BATCH: i64 = 1000;
    let mut published = 0u64;
    for n in 0..150_i64 {
        let items: Vec<Value> = (0..PER_BATCH)
            .map(|j| reading(dev.id, &format!("m{}", j % 10), j as f64, at(t0, n * PER_BATCH + j)))
            .collect();
        assert_eq!(send_readings(&app, &device_auth(&dev), &items).await, (PER_BATCH as u64, 0));
        published += 1;
        let ev = fast.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + published, "the reading subscriber gets every event");
        assert_eq!(ev["data"]["readings"].as_array().map(Vec::len), Some(PER_BATCH as usize));
        if n % 5 == 4 && slow_consumer_counted(&app).await {
            break;
        }
    }

    // Reading again, the slow client finds a consecutive run of events, then 4008.
    let mut slow = slow.resume();
    let (msgs, (code, reason)) = slow.messages_until_close(Duration::from_secs(60)).await;
    assert_eq!(code, 4008, "slow consumer: {reason}");
    let events: Vec<u64> = msgs.iter().filter(|m| m["type"] == "event").map(id_of).collect();
    assert!((events.len() as u64) < published, "it was cut off before the end");
    for (k, id) in events.iter().enumerate() {
        assert_eq!(*id, slow_s + 1 + k as u64, "what it did get has no hole: {events:?}");
    }

    // The fast one is unaffected.
    send_readings(&app, &device_auth(&dev), &[reading(dev.id, "t", 1.0, at(t0, -1))]).await;
    assert_eq!(id_of(&fast.expect_event(&path).await), s + published + 1);
}

#[tokio::test]
async fn realtime_a_slow_sse_stream_ends_with_slow_consumer() {
    let app =
        quiet_app(&[("REALTIME_QUEUE", "8"), ("REALTIME_PING_SECS", "600"), ("REALTIME_IDLE_TIMEOUT_SECS", "1200")])
            .await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "firehose").await;
    let path = live(dev.id);
    let t0 = base();

    let mut fast = WsClient::authed(&app, &g.owner.access).await.named("fast");
    let s = id_of(&fast.snapshot(&path).await);
    let mut slow = SseClient::authed(&app, &[&path], &g.owner.access).await;
    let (_, snap) = slow.next_on(&path, WAIT).await;
    let slow_s = id_of(&snap);

    const PER_BATCH: i64 = 1000;
    let mut published = 0u64;
    for n in 0..150_i64 {
        let items: Vec<Value> = (0..PER_BATCH)
            .map(|j| reading(dev.id, &format!("m{}", j % 10), j as f64, at(t0, n * PER_BATCH + j)))
            .collect();
        assert_eq!(send_readings(&app, &device_auth(&dev), &items).await, (PER_BATCH as u64, 0));
        published += 1;
        assert_eq!(id_of(&fast.expect_event(&path).await), s + published);
        if n % 5 == 4 && slow_consumer_counted(&app).await {
            break;
        }
    }

    // Reading again: a consecutive run of events, then `error` `slow_consumer`, then the end.
    assert!(slow.ended(Duration::from_secs(60)).await, "the slow stream ends");
    let msgs = std::mem::take(&mut slow.skipped);
    let last = msgs.last().unwrap_or_else(|| panic!("an error before the end"));
    let (ty, code) = (last["type"].as_str(), last["code"].as_str());
    assert_eq!(
        (ty, code),
        (Some("error"), Some("slow_consumer")),
        "the last of {} messages (id {})",
        msgs.len(),
        last["id"]
    );
    let events: Vec<u64> = msgs.iter().filter(|m| m["type"] == "event").map(id_of).collect();
    assert!((events.len() as u64) < published, "it was cut off before the end");
    for (k, id) in events.iter().enumerate() {
        assert_eq!(*id, slow_s + 1 + k as u64, "what it did get has no hole: {events:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_subscriptions_per_connection_are_limited() {
    let app = quiet_app(&[("REALTIME_MAX_SUBSCRIPTIONS", "2")]).await;
    let g = greenhouse(&app).await;
    let mut paths = Vec::new();
    for n in 0..3 {
        paths.push(desired(create_device(&app, &g.owner, g.grower_id, &format!("d{n}")).await.id));
    }
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    ws.snapshot(&paths[0]).await;
    ws.snapshot(&paths[1]).await;
    ws.subscribe(&paths[2]).await;
    let refused = ws.next_on(&paths[2], WAIT).await;
    assert_eq!(refused["type"], "error", "a third path is one too many: {refused}");
    // Unsubscribing frees a place.
    ws.send_json(json!({ "type": "unsubscribe", "path": paths[0] })).await;
    assert_eq!(ws.next_on(&paths[0], WAIT).await["type"], "unsubscribed");
    ws.snapshot(&paths[2]).await;

    // SSE takes up to 100 paths (with the default limit).
    let app = quiet_app(&[]).await;
    let user = register(&app, "many").await;
    let many: Vec<String> = (0..101).map(|_| desired(Uuid::now_v7())).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let res = sse_request(app.addr, &refs, SseAuth::Query(&user.access), None).await;
    assert_error(res, 400, SSE_PATH).await;
    let mut sse = SseClient::authed(&app, &refs[..100], &user.access).await;
    let (_, first) = sse.next_message(WAIT).await;
    assert_eq!((first["type"].as_str(), first["code"].as_str()), (Some("error"), Some("forbidden")), "{first}");
}

// ---------------------------------------------------------------------------------------------
// Keep-alive and shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_sse_streams_get_keep_alive_comments() {
    let app = quiet_app(&[("REALTIME_PING_SECS", "0.5")]).await;
    let user = register(&app, "quiet").await;
    let mut sse = SseClient::authed(&app, &[&orders(user.id)], &user.access).await;
    assert_eq!(sse.next_on(&orders(user.id), WAIT).await.1["type"], "snapshot");
    assert!(sse.wait_for_comment(WAIT).await, "a `: ping` comment keeps an idle stream alive");
    assert!(sse.skipped.is_empty(), "{:?}", sse.skipped);
}

#[tokio::test]
async fn realtime_shutdown_closes_sockets_with_1001_and_ends_streams() {
    let mut app = quiet_app(&[]).await;
    let user = register(&app, "leaving").await;
    let path = orders(user.id);
    let mut ws = WsClient::authed(&app, &user.access).await;
    ws.snapshot(&path).await;
    let mut sse = SseClient::authed(&app, &[&path], &user.access).await;
    sse.next_on(&path, WAIT).await;

    let server = app.begin_shutdown();
    let (code, _) = ws.expect_close(WAIT).await;
    assert_eq!(code, 1001, "server shutting down");
    assert!(sse.ended(WAIT).await, "the stream ends");
    let stopped = tokio::time::timeout(WAIT, server).await;
    assert!(stopped.is_ok(), "open realtime connections do not hold up the shutdown");
}

// ---------------------------------------------------------------------------------------------
// 13. Two instances over Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_two_instances_share_events_resume_and_presence_over_redis() {
    let (a_app, b_app, _dir) = two_instances_on_redis(&[("JOB_CONCURRENCY", "0"), ("REALTIME_PING_SECS", "1")]).await;
    let g: Greenhouse = greenhouse(&a_app).await;
    let watcher = user_with_role(&a_app, "watcher", "GROWER").await;
    json_of(add_member(&a_app, &g.admin, g.grower_id, watcher.id, "MEMBER").await, 201).await;
    let dev = create_device(&a_app, &g.owner, g.grower_id, "sensor").await;
    let path = live(dev.id);
    let t0 = base();

    // A member watches presence from B throughout: every connect and disconnect of the owner,
    // on either instance, is one event, ids one by one.
    let ppath = presence(g.grower_id);
    let mut watcher_b = WsClient::authed(&b_app, &watcher.access).await.named("watcher on B");
    let snap = watcher_b.snapshot(&ppath).await;
    assert_eq!(member_entry(&snap, g.owner.id)["online"], false, "{snap}");
    assert_eq!(member_entry(&snap, watcher.id)["online"], true, "{snap}");
    let mut ps = id_of(&snap);
    // With Redis, events are published by a task: the watcher's own `online` may get its id
    // after the snapshot that already shows it, and so arrive once as the next event (applying
    // it again changes nothing). Tolerated once, before anything else.
    let mut first = true;
    let mut owner_goes = async |online: bool, ws: &mut WsClient| {
        let mut ev = ws.next_on(&ppath, LONG_WAIT).await;
        if std::mem::take(&mut first) && ev["data"]["userId"] == watcher.id.to_string() && ev["data"]["online"] == true
        {
            ps += 1;
            assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), ps), "{ev}");
            ev = ws.next_on(&ppath, LONG_WAIT).await;
        }
        ps += 1;
        assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), ps), "{ev}");
        assert_eq!(ev["data"]["userId"], g.owner.id.to_string(), "{ev}");
        assert_eq!(ev["data"]["online"], online, "{ev}");
    };

    // A subscriber on B, telemetry posted to A.
    let mut on_b = WsClient::authed(&b_app, &g.owner.access).await.named("on B");
    owner_goes(true, &mut watcher_b).await;
    let s = id_of(&on_b.snapshot(&path).await);
    for n in 1..=3_i64 {
        let batch = [reading(dev.id, "t", n as f64, at(t0, n))];
        send_readings(&a_app, &device_auth(&dev), &batch).await;
        let ev = on_b.expect_event(&path).await;
        assert_eq!(id_of(&ev), s + n as u64, "{ev}");
        assert_eq!(event_readings(&ev), triples(&batch), "{ev}");
    }
    on_b.close().await;
    owner_goes(false, &mut watcher_b).await;

    // Resume on B after events posted to A.
    for n in 4..=5_i64 {
        send_readings(&a_app, &device_auth(&dev), &[reading(dev.id, "t", n as f64, at(t0, n))]).await;
    }
    let mut on_b = WsClient::authed(&b_app, &g.owner.access).await.named("resumed on B");
    owner_goes(true, &mut watcher_b).await;
    on_b.subscribe_since(&path, &(s + 3).to_string()).await;
    for n in 4..=5 {
        let ev = on_b.next_on(&path, WAIT).await;
        assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + n), "{ev}");
    }
    // An id never issued is a reset on B too, with a snapshot covering what A published.
    let mut lost = WsClient::authed(&b_app, &g.owner.access).await.named("lost on B");
    lost.subscribe_since(&path, "1").await;
    assert_eq!(lost.next_on(&path, WAIT).await, json!({ "type": "reset", "path": path }));
    let snap = lost.expect_snapshot(&path).await;
    assert_eq!(id_of(&snap), s + 5, "{snap}");
    assert_eq!(snap["data"]["reported"]["t"]["value"], 5.0, "{snap}");
    lost.close().await;
    // SSE on B resumes the same way (and, a second connection, publishes no presence).
    let mut sse =
        SseClient::connect(b_app.addr, &[&path], SseAuth::Query(&g.owner.access), Some(&(s + 4).to_string())).await;
    let (_, ev) = sse.next_on(&path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + 5), "{ev}");
    on_b.close().await;
    drop(sse);
    owner_goes(false, &mut watcher_b).await;

    // The owner connected to A is seen from B.
    let on_a = WsClient::authed(&a_app, &g.owner.access).await.named("owner on A");
    owner_goes(true, &mut watcher_b).await;
    on_a.close().await;
    owner_goes(false, &mut watcher_b).await;

    // A revocation on A reaches a socket on B.
    let s2 = login_ok(&a_app, &g.owner.email, PASSWORD).await;
    let mut ws = WsClient::authed(&b_app, &s2.access).await.named("session on B");
    ws.snapshot(&path).await;
    let res = a_app
        .client
        .post(a_app.url("/api/v1/auth/logout"))
        .json(&json!({ "refreshToken": s2.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(ws.expect_close(WAIT).await.0, 4003);
}

// ---------------------------------------------------------------------------------------------
// 14. Ping and bad messages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn realtime_ping_is_answered_and_bad_messages_do_not_close_the_connection() {
    let app = quiet_app(&[]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = desired(dev.id);

    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    ws.send_json(json!({ "type": "ping" })).await;
    assert_eq!(ws.next_json(WAIT).await, json!({ "type": "pong" }));

    for bad in
        ["{not json", "[1,2]", "\"subscribe\"", r#"{"type":"fly"}"#, r#"{"type":"subscribe"}"#, r#"{"path":"/x"}"#]
    {
        ws.send_text(bad).await;
        match ws.recv(WAIT).await {
            WsNext::Json(v) => {
                assert_eq!(v["type"], "error", "{bad}: {v}");
                assert_eq!(v["code"], "invalid", "{bad}: {v}");
                assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{bad}: {v}");
            }
            other => panic!("{bad}: expected an error message, got {other:?}"),
        }
        ws.send_json(json!({ "type": "ping" })).await;
        assert_eq!(ws.next_json(WAIT).await, json!({ "type": "pong" }), "still open after {bad}");
    }
    let snap = ws.snapshot(&path).await;
    put_desired(&app, &g.owner, dev.id, json!({ "fan": "on" })).await;
    assert_eq!(id_of(&ws.expect_event(&path).await), id_of(&snap) + 1);
}
