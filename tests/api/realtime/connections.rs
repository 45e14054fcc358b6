//! The connection itself: slow consumers cut off (WebSocket and SSE) while the others get
//! everything, subscription limits, keep-alive comments, shutdown, ping and bad messages.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::register,
    assert_error,
    greenhouse::{create_device, device_auth, greenhouse, reading, send_readings},
    quiet_app,
    rt_client::{SSE_PATH, SseAuth, SseClient, WAIT, WsClient, WsNext, id_of, sse_request},
};

use super::{at, base, desired, live, orders, put_desired, slow_consumer_counted};

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
