//! The subscriber on `mash/devices/+/telemetry`: readings stored once, malformed messages
//! counted and survived, nothing lost while the server is down (the persistent session), and
//! reconnection after a broker restart (against a `mosquitto` of its own).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use axum::Router;
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{
    accounts::{authed, json_of},
    greenhouse::{create_device, device_auth, greenhouse_with_device, post_batch},
    spawn_app_with,
    telemetry::{metric_value, rfc3339, stored_count, this_hour},
};

use super::{
    HOST, PATIENCE, SHARED_PORT, as_refs, finish, item, mqtt_overrides, publish, publish_until_stored, readings,
    spawn_mqtt_app, telemetry_topic, unique_client_id, wait_for_counter, wait_for_readings,
};

// ---------------------------------------------------------------------------------------------
// The subscriber
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn readings_published_to_the_broker_are_stored_once() {
    let client_id = unique_client_id();
    let mut app = spawn_mqtt_app(SHARED_PORT, &client_id).await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let token = gh.owner.access.clone();
    publish_until_stored(&app, &token, SHARED_PORT, dev.id, "probe").await;
    let topic = telemetry_topic(dev.id);
    let t0 = this_hour() - chrono::Duration::hours(2);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);

    // A list without deviceId (the topic's device), one item naming the device, and a big batch.
    let list = json!([item("air.temp", 20.5, at(0)), item("air.temp", 21.0, at(1)), item("air.temp", 21.5, at(2))]);
    publish(SHARED_PORT, &topic, list.to_string(), false).await;
    let one = json!({ "deviceId": dev.id, "metric": "air.temp", "value": 22.25, "ts": rfc3339(at(3)) });
    publish(SHARED_PORT, &topic, one.to_string(), false).await;
    let big: Vec<Value> = (0..2000).map(|i| item("air.co2", 400.0 + i as f64, at(i))).collect();
    publish(SHARED_PORT, &topic, json!(big).to_string(), false).await;

    let temps = wait_for_readings(&app, &token, dev.id, "air.temp", 4).await;
    assert_eq!(temps, vec![(at(0), 20.5), (at(1), 21.0), (at(2), 21.5), (at(3), 22.25)]);
    let co2 = wait_for_readings(&app, &token, dev.id, "air.co2", 2000).await;
    let want: Vec<_> = (0..2000).map(|i| (at(i), 400.0 + i as f64)).collect();
    assert_eq!(co2, want);
    let state = json_of(
        authed(&app, Method::GET, &format!("/api/v1/devices/{}/state", dev.id), &token).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(state["reported"]["air.temp"]["value"], 22.25, "{state}");
    assert_eq!(state["reported"]["air.co2"]["value"], 2399.0, "{state}");
    assert!(state["lastSeenAt"].is_string(), "MQTT traffic counts as contact: {state}");

    // Sent again: duplicates, nothing stored twice. A marker after it shows it was handled.
    publish(SHARED_PORT, &topic, list.to_string(), false).await;
    publish(SHARED_PORT, &topic, json!([item("marker", 1.0, at(10))]).to_string(), false).await;
    wait_for_readings(&app, &token, dev.id, "marker", 1).await;
    assert_eq!(readings(&app, &token, dev.id, "air.temp").await.len(), 4);
    assert_eq!(stored_count(&app, dev.id).await, 1 + 4 + 2000 + 1);
    assert_eq!(metric_value(&app, "telemetry_readings_ingested_total{source=\"mqtt\"}").await, 2006.0);
    assert!(metric_value(&app, "telemetry_readings_duplicate_total{source=\"mqtt\"}").await >= 3.0);

    finish(&mut app, SHARED_PORT, &client_id).await;
}

#[tokio::test]
async fn a_malformed_message_is_counted_and_the_next_one_is_stored() {
    let client_id = unique_client_id();
    let mut app = spawn_mqtt_app(SHARED_PORT, &client_id).await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let other = create_device(&app, &gh.owner, gh.grower_id, "other").await;
    let token = gh.owner.access.clone();
    publish_until_stored(&app, &token, SHARED_PORT, dev.id, "probe").await;
    let topic = telemetry_topic(dev.id);
    let t0 = this_hour() - chrono::Duration::hours(1);
    let series = |reason: &str| format!("telemetry_rejected_total{{source=\"mqtt\",reason=\"{reason}\"}}");
    let invalid_before = metric_value(&app, &series("invalid")).await;
    let topic_before = metric_value(&app, &series("topic")).await;
    let unknown_before = metric_value(&app, &series("unknown_device")).await;
    let forbidden_before = metric_value(&app, &series("forbidden")).await;

    let invalid: Vec<String> = vec![
        "not json at all".into(),
        String::new(),
        "[]".into(),
        json!({ "metric": "Bad Metric", "value": 1.0, "ts": rfc3339(t0) }).to_string(),
        json!([{ "metric": "air.temp", "value": "abc", "ts": rfc3339(t0) }]).to_string(),
        // One bad item refuses the whole message: the good one beside it is not stored.
        json!([item("air.temp", 5.0, t0), item("air.temp", 6.0, Utc::now() - chrono::Duration::days(40))]).to_string(),
        json!({ "deviceId": dev.id, "metric": "air.temp", "value": 1.0 }).to_string(),
        // More than a batch may hold.
        json!((0..5001).map(|i| item("air.temp", 1.0, t0 - chrono::Duration::seconds(i))).collect::<Vec<_>>())
            .to_string(),
    ];
    for payload in &invalid {
        publish(SHARED_PORT, &topic, payload.clone(), false).await;
    }
    let good_payload = json!([item("air.temp", 7.0, t0 + chrono::Duration::seconds(1))]).to_string();
    publish(SHARED_PORT, "mash/devices/not-a-device/telemetry", good_payload.clone(), false).await;
    publish(SHARED_PORT, &telemetry_topic(Uuid::now_v7()), good_payload.clone(), false).await;
    // A message on one device's topic carrying another device's reading.
    let foreign = json!([{ "deviceId": other.id, "metric": "air.temp", "value": 8.0, "ts": rfc3339(t0) }]);
    publish(SHARED_PORT, &topic, foreign.to_string(), false).await;

    // The subscriber is still there: the good message after all of that is stored.
    publish(SHARED_PORT, &topic, good_payload, false).await;
    let got = wait_for_readings(&app, &token, dev.id, "air.temp", 1).await;
    assert_eq!(got, vec![(t0 + chrono::Duration::seconds(1), 7.0)]);
    assert_eq!(stored_count(&app, other.id).await, 0);

    wait_for_counter(&app, &series("invalid"), invalid_before + invalid.len() as f64).await;
    wait_for_counter(&app, &series("topic"), topic_before + 1.0).await;
    wait_for_counter(&app, &series("unknown_device"), unknown_before + 1.0).await;
    wait_for_counter(&app, &series("forbidden"), forbidden_before + 1.0).await;
    // Still nothing but the good reading (and the probe) for this device.
    assert_eq!(stored_count(&app, dev.id).await, 2);

    finish(&mut app, SHARED_PORT, &client_id).await;
}

#[tokio::test]
async fn nothing_published_while_the_server_is_down_is_lost() {
    let client_id = unique_client_id();
    let data_dir = tempfile::tempdir().unwrap();
    let overrides = mqtt_overrides(SHARED_PORT, &client_id, Some(data_dir.path().to_str().unwrap()));
    let mut first = spawn_app_with(&as_refs(&overrides), Router::new()).await;
    let (gh, dev) = greenhouse_with_device(&first, "mqtt sensor").await;
    let token = gh.owner.access.clone();
    // Once a probe is stored, the server's session (and its subscription) exists on the broker.
    publish_until_stored(&first, &token, SHARED_PORT, dev.id, "probe").await;

    first.begin_shutdown().await.unwrap().unwrap();
    let t0 = this_hour() - chrono::Duration::hours(3);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let mut want = Vec::new();
    for m in 0..5i64 {
        let batch: Vec<Value> = (0..10).map(|i| item("air.temp", (m * 10 + i) as f64, at(m * 10 + i))).collect();
        want.extend((0..10).map(|i| (at(m * 10 + i), (m * 10 + i) as f64)));
        publish(SHARED_PORT, &telemetry_topic(dev.id), json!(batch).to_string(), false).await;
    }

    // The same client id again: the broker hands over what it kept.
    let mut second = first.spawn_sibling(&as_refs(&overrides)).await;
    let got = wait_for_readings(&second, &token, dev.id, "air.temp", want.len()).await;
    assert_eq!(got, want);
    assert_eq!(stored_count(&second, dev.id).await, 1 + 50);

    finish(&mut second, SHARED_PORT, &client_id).await;
}

/// A Mosquitto of the test's own, on a fixed loopback port, that can be stopped and restarted.
struct OwnBroker {
    port: u16,
    config: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnBroker {
    async fn start() -> OwnBroker {
        let port = TcpListener::bind((HOST, 0)).unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, format!("listener {port} {HOST}\nallow_anonymous true\npersistence false\n")).unwrap();
        let mut b = OwnBroker { port, config, _dir: dir, child: None };
        b.restart().await;
        b
    }

    async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut child = Command::new("/usr/sbin/mosquitto")
                .arg("-c")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mosquitto");
            // Up when it accepts connections; an early exit (port still held) is retried.
            loop {
                if tokio::net::TcpStream::connect((HOST, self.port)).await.is_ok() {
                    self.child = Some(child);
                    return;
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "mosquitto did not start on port {}", self.port);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(Instant::now() < deadline, "mosquitto did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn the_subscriber_comes_back_after_a_broker_restart() {
    let mut broker = OwnBroker::start().await;
    let client_id = unique_client_id();
    let mut app = spawn_mqtt_app(broker.port, &client_id).await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let token = gh.owner.access.clone();
    publish_until_stored(&app, &token, broker.port, dev.id, "before").await;

    broker.stop();
    // The server keeps serving HTTP (and storing telemetry) without its broker.
    let t0 = this_hour() - chrono::Duration::hours(1);
    let body = json!([item("http.during", 1.0, t0)]);
    assert_eq!(post_batch(&app, &device_auth(&dev), &body).await.status(), 202);

    // A fresh broker (no persistence: the session is gone); the server must reconnect and
    // subscribe again by itself.
    broker.restart().await;
    publish_until_stored(&app, &token, broker.port, dev.id, "after").await;
    let batch: Vec<Value> = (0..20).map(|i| item("air.temp", i as f64, t0 + chrono::Duration::seconds(i))).collect();
    publish(broker.port, &telemetry_topic(dev.id), json!(batch).to_string(), false).await;
    let got = wait_for_readings(&app, &token, dev.id, "air.temp", 20).await;
    let want: Vec<_> = (0..20).map(|i| (t0 + chrono::Duration::seconds(i), i as f64)).collect();
    assert_eq!(got, want);

    // And once more.
    broker.stop();
    broker.restart().await;
    publish_until_stored(&app, &token, broker.port, dev.id, "again").await;

    app.begin_shutdown().await.unwrap().unwrap();
}
