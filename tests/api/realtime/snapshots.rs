//! Snapshot, then every event, none twice: live sensor readings one event per device per batch,
//! subscriptions racing telemetry and desired changes (on one instance and across two), and
//! readings that arrive over MQTT.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    greenhouse::{bearer, create_device, device_auth, greenhouse, reading, send_readings},
    quiet_app,
    rt_client::{WAIT, WsClient, WsNext, id_of},
    two_instances_on_redis,
};

use super::{at, base, desired, event_readings, live, micros, sent_for, triples};

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
