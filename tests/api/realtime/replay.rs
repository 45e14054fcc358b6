//! The two replay stores behind realtime resume, in process (no `REDIS_URL`) and in Redis,
//! seen by a client: each test body runs on both and expects the same. Ids go one by one;
//! `since` and `Last-Event-ID` bring exactly the missed events; a resume from beyond what is
//! held, or from an id never issued, is a `reset` and a snapshot; an older version never
//! follows a newer one. Events are published straight through `Realtime::publish`, as every
//! writer does, so the tests are about the stores and not about a source.

use serde_json::{Value, json};

use crate::helpers::{
    TestApp,
    accounts::{Account, register},
    greenhouse::{create_device, greenhouse},
    quiet_app, redis_url,
    rt_client::{SseAuth, SseClient, WAIT, WsClient, id_of},
};

#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Redis,
}

const STORES: [Store; 2] = [Store::Memory, Store::Redis];

async fn app_on(store: Store, extra: &[(&str, &str)]) -> TestApp {
    let redis = redis_url();
    let mut overrides = Vec::new();
    if let Store::Redis = store {
        // Redis counters are shared with anything else using this Redis.
        overrides.extend([("REDIS_URL", redis.as_str()), ("AUTH_RATE_LIMIT_PER_MINUTE", "100000")]);
    }
    overrides.extend_from_slice(extra);
    quiet_app(&overrides).await
}

/// A customer and their `/orders/{userId}` path (an empty snapshot: no orders).
async fn customer(app: &TestApp) -> (Account, String) {
    let who = register(app, "replay").await;
    let path = format!("/orders/{}", who.id);
    (who, path)
}

fn publish(app: &TestApp, path: &str, n: u64) {
    app.state.realtime.publish(path, None, &json!({ "n": n }));
}

/// The next message on `path`, asserted to be the event with this id and `n`.
async fn expect_event(ws: &mut WsClient, path: &str, id: u64, n: u64, store: Store) -> Value {
    let ev = ws.next_on(path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), id), "{store:?}: {ev}");
    assert_eq!(ev["data"]["n"], n, "{store:?}: {ev}");
    ev
}

#[tokio::test]
async fn replay_resume_sends_exactly_the_missed_events_on_both_stores() {
    for store in STORES {
        let app = app_on(store, &[]).await;
        let (who, path) = customer(&app).await;
        let mut ws = WsClient::authed(&app, &who.access).await;
        let s = id_of(&ws.snapshot(&path).await);
        for n in 1..=5 {
            publish(&app, &path, n);
            expect_event(&mut ws, &path, s + n, n, store).await;
        }
        ws.close().await;

        // `since` two events back: exactly the three after it, no snapshot, then live.
        let mut ws = WsClient::authed(&app, &who.access).await;
        ws.subscribe_since(&path, &(s + 2).to_string()).await;
        for n in 3..=5 {
            expect_event(&mut ws, &path, s + n, n, store).await;
        }
        publish(&app, &path, 6);
        expect_event(&mut ws, &path, s + 6, 6, store).await;

        // `since` the latest id: nothing until the next event.
        let mut up_to_date = WsClient::authed(&app, &who.access).await;
        up_to_date.subscribe_since(&path, &(s + 6).to_string()).await;
        // The subscription is made once the server answers what follows it; it sent nothing.
        let before = up_to_date.ping_round_trip().await;
        assert!(before.iter().all(|m| m["path"] != path.as_str()), "{store:?}: {before:?}");
        publish(&app, &path, 7);
        expect_event(&mut up_to_date, &path, s + 7, 7, store).await;
        expect_event(&mut ws, &path, s + 7, 7, store).await;

        // SSE: `Last-Event-ID` resumes the same way.
        let mut sse =
            SseClient::connect(app.addr, &[&path], SseAuth::Query(&who.access), Some(&(s + 5).to_string())).await;
        for n in 6..=7 {
            let (cursor, ev) = sse.next_on(&path, WAIT).await;
            assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), s + n), "{store:?}: {ev}");
            assert_eq!(cursor, Some((s + n).to_string()), "{store:?}");
        }
    }
}

#[tokio::test]
async fn replay_resume_from_beyond_what_is_held_is_a_reset_on_both_stores() {
    // Redis trims a replay stream approximately (`MAXLEN ~`, whole nodes of up to 100
    // entries): 150 events are enough for the first ones to be gone there too.
    const EVENTS: u64 = 150;
    for store in STORES {
        let app = app_on(store, &[("REALTIME_REPLAY_EVENTS", "3")]).await;
        let (who, path) = customer(&app).await;
        let mut ws = WsClient::authed(&app, &who.access).await;
        let s = id_of(&ws.snapshot(&path).await);
        for n in 1..=EVENTS {
            publish(&app, &path, n);
        }
        for n in 1..=EVENTS {
            expect_event(&mut ws, &path, s + n, n, store).await;
        }
        ws.close().await;

        // The last three are held on both: a replay.
        let mut ws = WsClient::authed(&app, &who.access).await;
        ws.subscribe_since(&path, &(s + EVENTS - 3).to_string()).await;
        for n in EVENTS - 2..=EVENTS {
            expect_event(&mut ws, &path, s + n, n, store).await;
        }
        ws.close().await;

        // The first ones are not, and some ids were never issued: a reset and a snapshot
        // covering every event, then live.
        let mut next = EVENTS;
        for since in [s + 1, 1, s + 1_000_000] {
            let mut ws = WsClient::authed(&app, &who.access).await;
            ws.subscribe_since(&path, &since.to_string()).await;
            let reset = ws.next_on(&path, WAIT).await;
            assert_eq!(reset, json!({ "type": "reset", "path": path }), "{store:?}, since {since}");
            let snap = ws.expect_snapshot(&path).await;
            assert_eq!(id_of(&snap), s + next, "{store:?}, since {since}: {snap}");
            next += 1;
            publish(&app, &path, next);
            expect_event(&mut ws, &path, s + next, next, store).await;
            ws.close().await;
        }
    }
}

#[tokio::test]
async fn replay_an_older_version_never_follows_a_newer_one_on_both_stores() {
    for store in STORES {
        let app = app_on(store, &[]).await;
        let g = greenhouse(&app).await;
        let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
        let path = format!("/controls/{}/desired", dev.id);
        let mut ws = WsClient::authed(&app, &g.owner.access).await;
        let snap = ws.snapshot(&path).await;
        let (s, base) = (id_of(&snap), snap["data"]["desiredVersion"].as_i64().expect("a version"));
        for v in [base + 2, base + 1, base + 3] {
            let data = json!({ "deviceId": dev.id, "desired": { "v": v }, "desiredVersion": v });
            app.state.realtime.publish(&path, Some(v), &data);
        }
        for (id, v) in [(s + 1, base + 2), (s + 2, base + 3)] {
            let ev = ws.next_on(&path, WAIT).await;
            assert_eq!((ev["type"].as_str(), id_of(&ev)), (Some("event"), id), "{store:?}: {ev}");
            assert_eq!(ev["data"]["desiredVersion"], v, "{store:?}: the older version is skipped: {ev}");
        }
        // Resuming from the snapshot replays the same two, and nothing of the skipped one.
        let mut again = WsClient::authed(&app, &g.owner.access).await;
        again.subscribe_since(&path, &s.to_string()).await;
        for v in [base + 2, base + 3] {
            let ev = again.next_on(&path, WAIT).await;
            assert_eq!((ev["type"].as_str(), ev["data"]["desiredVersion"].as_i64()), (Some("event"), Some(v)), "{ev}");
        }
    }
}
