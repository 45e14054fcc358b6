//! Realtime state kept in Redis, as only a test that looks into Redis can see it: presence of a
//! connection whose instance died (its entry stops being refreshed, expires, and the upkeep of
//! any instance announces its user offline), and the replay store's per-path keys, which
//! expire once a path is quiet, after which a resume still gets exactly what it missed or a
//! `reset` and a snapshot, never a silent hole.

use std::time::Duration;

use axum::Router;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp,
    accounts::{json_of, register, user_with_role},
    greenhouse::{add_member, create_device, greenhouse},
    redis_url,
    rt_client::{WAIT, WsClient, id_of},
    spawn_app_with,
};

/// How long an idle path's counter and version are kept (`replay::keys_ttl` at the default
/// replay window).
const KEYS_TTL_MS: i64 = 24 * 3600 * 1000;

async fn app_on_redis(extra: &[(&str, &str)]) -> TestApp {
    let redis = redis_url();
    // Redis counters are shared with anything else using this Redis.
    let mut overrides = vec![("REDIS_URL", redis.as_str()), ("AUTH_RATE_LIMIT_PER_MINUTE", "100000")];
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides, Router::new()).await
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("a Redis URL");
    client.get_multiplexed_async_connection().await.expect("Redis is reachable")
}

/// The next message on `path` about `user`, skipping others' (with Redis the watcher's own
/// `online` may follow the snapshot that already shows it).
async fn next_about(ws: &mut WsClient, path: &str, user: uuid::Uuid) -> Value {
    loop {
        let msg = ws.next_on(path, WAIT).await;
        if msg["data"]["userId"] == user.to_string() {
            return msg;
        }
    }
}

#[tokio::test]
async fn presence_of_a_connection_its_instance_stopped_refreshing_ends_on_redis() {
    let app = app_on_redis(&[("REALTIME_PING_SECS", "0.5"), ("REALTIME_IDLE_TIMEOUT_SECS", "2")]).await;
    let g = greenhouse(&app).await;
    let watcher = user_with_role(&app, "watcher", "GROWER").await;
    json_of(add_member(&app, &g.admin, g.grower_id, watcher.id, "MEMBER").await, 201).await;
    let path = format!("/presence/{}", g.grower_id);

    // The owner's connection on an instance that died: its entry, as that instance last
    // refreshed it, has a second to live.
    let mut redis = redis_conn().await;
    let expiry = chrono::Utc::now().timestamp_millis() + 1000;
    let conn = format!("dead-instance-{}:1", uuid::Uuid::now_v7());
    let _: () = redis.zadd(format!("mash:presence:{}:{}", g.grower_id, g.owner.id), &conn, expiry).await.unwrap();
    let indexed = format!("{}|{}|{conn}", g.grower_id, g.owner.id);
    let _: () = redis.zadd("mash:presence:conns", indexed, expiry).await.unwrap();

    let mut ws = WsClient::authed(&app, &watcher.access).await;
    let snap = ws.snapshot(&path).await;
    let owner = |snap: &Value| {
        snap["data"]["members"].as_array().unwrap().iter().find(|m| m["userId"] == g.owner.id.to_string()).cloned()
    };
    assert_eq!(owner(&snap).unwrap()["online"], true, "counted while its entry lives: {snap}");

    // Nobody refreshes it: once expired, an instance's upkeep (every ping) sweeps it.
    let ev = next_about(&mut ws, &path, g.owner.id).await;
    assert_eq!((ev["type"].as_str(), &ev["data"]["online"]), (Some("event"), &json!(false)), "{ev}");
    assert!(ev["data"]["lastSeenAt"].is_string(), "{ev}");
    let mut late = WsClient::authed(&app, &watcher.access).await;
    let snap = late.snapshot(&path).await;
    assert_eq!(owner(&snap).unwrap()["online"], false, "{snap}");
}

/// A path's counter, replay stream and last version in Redis.
fn keys(path: &str) -> [String; 3] {
    ["n", "s", "v"].map(|k| format!("mash:rt:{{{path}}}:{k}"))
}

async fn pttl(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(redis).await.unwrap()
}

/// Asserts `key` expires as an idle path's counter or version does, counted from about now.
async fn assert_kept_for_a_day(redis: &mut redis::aio::MultiplexedConnection, key: &str) {
    let ttl = pttl(redis, key).await;
    assert!((KEYS_TTL_MS - 60_000..=KEYS_TTL_MS).contains(&ttl), "{key} expires in {ttl} ms");
}

/// What the path's keys expiring after a quiet day does (brought forward here).
async fn expire_now(redis: &mut redis::aio::MultiplexedConnection, path: &str) {
    for key in keys(path) {
        let _: () = redis::cmd("PEXPIRE").arg(&key).arg(1).query_async(redis).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let left: i64 = redis::cmd("EXISTS").arg(&keys(path)).query_async(redis).await.unwrap();
    assert_eq!(left, 0, "{path}'s keys are gone");
}

async fn expect_event(ws: &mut WsClient, path: &str, id: u64, n: u64) {
    let ev = ws.next_on(path, WAIT).await;
    assert_eq!((ev["type"].as_str(), id_of(&ev), &ev["data"]["n"]), (Some("event"), id, &json!(n)), "{ev}");
}

/// A resume from `since`, answered with a `reset` and a snapshot: its id.
async fn expect_reset(ws: &mut WsClient, path: &str, since: u64) -> u64 {
    ws.subscribe_since(path, &since.to_string()).await;
    assert_eq!(ws.next_on(path, WAIT).await, json!({ "type": "reset", "path": path }), "since {since}");
    id_of(&ws.expect_snapshot(path).await)
}

#[tokio::test]
async fn replay_keys_expire_once_a_path_is_quiet_and_a_new_counter_resets_or_replays() {
    let app = app_on_redis(&[("JOB_CONCURRENCY", "0")]).await;
    let who = register(&app, "quiet").await;
    let path = format!("/orders/{}", who.id);
    let [n, s, _] = keys(&path);
    let publish = |n: u64| app.state.realtime.publish(&path, None, &json!({ "n": n }));
    let mut redis = redis_conn().await;

    // A subscription makes the counter, an event keeps it: each for a day from then.
    let mut ws = WsClient::authed(&app, &who.access).await;
    let first = id_of(&ws.snapshot(&path).await);
    assert_kept_for_a_day(&mut redis, &n).await;
    publish(1);
    expect_event(&mut ws, &path, first + 1, 1).await;
    assert_kept_for_a_day(&mut redis, &n).await;
    assert!((1..=300_000).contains(&pttl(&mut redis, &s).await), "the stream lasts the replay window");
    ws.close().await;

    // Quiet until the keys expire: the next subscription makes a new counter, above every id
    // issued before, so a resume from the last of them is a reset, not a silent replay.
    expire_now(&mut redis, &path).await;
    let mut ws = WsClient::authed(&app, &who.access).await;
    let second = expect_reset(&mut ws, &path, first + 1).await;
    assert!(second > first + 1, "a new counter starts above the old ids: {second} after {first}");
    assert_kept_for_a_day(&mut redis, &n).await;
    publish(2);
    expect_event(&mut ws, &path, second + 1, 2).await;
    ws.close().await;
    // Ids of the new counter resume as ever.
    let mut ws = WsClient::authed(&app, &who.access).await;
    ws.subscribe_since(&path, &second.to_string()).await;
    expect_event(&mut ws, &path, second + 1, 2).await;
    ws.close().await;

    // A counter remade by an event (nobody subscribed) too: the resume is a reset whose
    // snapshot covers that event, and what follows comes live.
    expire_now(&mut redis, &path).await;
    publish(3);
    let mut made = None;
    for _ in 0..500 {
        made = redis.get::<_, Option<u64>>(&n).await.unwrap();
        if made.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = made.expect("the event made a counter");
    assert!(third > second + 1, "{third} after {second}");
    assert_kept_for_a_day(&mut redis, &n).await;
    let mut ws = WsClient::authed(&app, &who.access).await;
    assert_eq!(expect_reset(&mut ws, &path, second + 1).await, third);
    publish(4);
    expect_event(&mut ws, &path, third + 1, 4).await;
}

#[tokio::test]
async fn replay_a_versioned_path_keeps_its_version_as_long_as_its_counter() {
    let app = app_on_redis(&[("JOB_CONCURRENCY", "0")]).await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = format!("/controls/{}/desired", dev.id);
    let [n, _, v] = keys(&path);
    let publish = |v: i64| {
        let data = json!({ "deviceId": dev.id, "desired": { "v": v }, "desiredVersion": v });
        app.state.realtime.publish(&path, Some(v), &data);
    };
    let mut redis = redis_conn().await;
    let mut ws = WsClient::authed(&app, &g.owner.access).await;
    let s = id_of(&ws.snapshot(&path).await);
    publish(5);
    let ev = ws.next_on(&path, WAIT).await;
    assert_eq!((id_of(&ev), &ev["data"]["desiredVersion"]), (s + 1, &json!(5)), "{ev}");
    assert_kept_for_a_day(&mut redis, &v).await;
    assert_kept_for_a_day(&mut redis, &n).await;
    // An older version is still refused while the path is in use.
    publish(4);
    publish(6);
    let ev = ws.next_on(&path, WAIT).await;
    assert_eq!((id_of(&ev), &ev["data"]["desiredVersion"]), (s + 2, &json!(6)), "{ev}");
}
