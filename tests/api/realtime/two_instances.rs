//! Two instances over Redis: events, resume and presence shared, and a revocation on one
//! closing a socket on the other.

use serde_json::json;

use crate::helpers::{
    accounts::{PASSWORD, json_of, login_ok, user_with_role},
    greenhouse::{Greenhouse, add_member, create_device, device_auth, greenhouse, reading, send_readings},
    rt_client::{SseAuth, SseClient, WAIT, WsClient, id_of},
    two_instances_on_redis,
};

use super::{LONG_WAIT, at, base, event_readings, live, member_entry, presence, triples};

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
