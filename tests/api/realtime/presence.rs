//! Presence: a user counted once across connections, last seen surviving a restart, and a dead
//! client closed and gone offline.

use serde_json::json;

use crate::helpers::{
    accounts::{PASSWORD, json_of, login_ok, user_with_role},
    greenhouse::{add_member, greenhouse},
    quiet_app,
    rt_client::{SseClient, WAIT, WsClient, WsNext, id_of},
};

use super::{assert_timestamp, member_entry, micros, presence};

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
