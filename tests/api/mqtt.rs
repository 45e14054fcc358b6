//! CONTRACT.md "Growers, devices, telemetry", MQTT: the subscriber on `mash/devices/+/telemetry`
//! (real broker, same validation and dedup as HTTP, bad messages counted and survived, nothing
//! lost while the server is away thanks to the persistent session, reconnection after a broker
//! restart), the retained desired-state publish, and the broker's HTTP auth/ACL hooks.
//!
//! The machine's Mosquitto (127.0.0.1:1883, anonymous) serves most tests; the restart test runs
//! its own `mosquitto` on a free loopback port. Every app gets its own `MQTT_CLIENT_ID`, and its
//! persistent session is removed from the broker at the end.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use axum::Router;
use chrono::{DateTime, Utc};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};
use tokio::{sync::mpsc, time::Instant};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{authed, json_of},
    assert_error,
    greenhouse::{create_device, device_auth, greenhouse_with_device, post_batch},
    spawn_app_with,
    telemetry::{all_raw, metric_value, rfc3339, stored_count, this_hour},
};

const HOST: &str = "127.0.0.1";
/// The machine's broker.
const SHARED_PORT: u16 = 1883;
/// How long anything asynchronous may take before a test gives up (never asserted as a timing).
const PATIENCE: Duration = Duration::from_secs(60);

fn unique_client_id() -> String {
    format!("mash-test-{}", Uuid::now_v7().simple())
}

fn telemetry_topic(device: Uuid) -> String {
    format!("mash/devices/{device}/telemetry")
}

fn desired_topic(device: Uuid) -> String {
    format!("mash/devices/{device}/desired")
}

/// An app subscribed to the broker on `port` as `client_id`.
fn mqtt_overrides(port: u16, client_id: &str, data_dir: Option<&str>) -> Vec<(&'static str, String)> {
    let mut v = vec![("MQTT_URL", format!("mqtt://{HOST}:{port}")), ("MQTT_CLIENT_ID", client_id.to_string())];
    if let Some(d) = data_dir {
        v.push(("MASH_DATA_DIR", d.to_string()));
    }
    v
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn spawn_mqtt_app(port: u16, client_id: &str) -> TestApp {
    let overrides = mqtt_overrides(port, client_id, None);
    spawn_app_with(&as_refs(&overrides), Router::new()).await
}

/// Stops the app and removes its persistent session from the broker.
async fn finish(app: &mut TestApp, port: u16, client_id: &str) {
    app.begin_shutdown().await.expect("server task").expect("server stopped cleanly");
    forget_session(port, client_id).await;
}

fn options(port: u16, client_id: String) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, HOST, port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    opts
}

/// Connects with `clean_session`, which makes the broker drop the client's stored session.
async fn forget_session(port: u16, client_id: &str) {
    let (client, mut el) = AsyncClient::new(options(port, client_id.to_string()), 10);
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.disconnect().await;
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let _ = done.await;
}

/// Publishes one QoS 1 message and returns once the broker has acknowledged it (so it is the
/// broker's from then on).
async fn publish(port: u16, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
    let (client, mut el) = AsyncClient::new(options(port, format!("mash-test-pub-{}", Uuid::now_v7().simple())), 10);
    client.publish(topic, QoS::AtLeastOnce, retain, payload).await.expect("queue publish");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, el.poll()).await {
            Err(_) => panic!("the broker on port {port} never acknowledged the publish to {topic}"),
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            // Not reachable yet (a broker starting): the next poll reconnects and resends.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// A test client subscribed to one topic, collecting what arrives.
struct Subscriber {
    rx: mpsc::UnboundedReceiver<rumqttc::Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn new(port: u16, topic: &str) -> Subscriber {
        let (client, mut el) =
            AsyncClient::new(options(port, format!("mash-test-sub-{}", Uuid::now_v7().simple())), 10);
        client.subscribe(topic, QoS::AtLeastOnce).await.expect("queue subscribe");
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut ready = Some(ready_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(PATIENCE, ready_rx).await.expect("SUBACK").expect("subscriber task");
        Subscriber { rx, task }
    }

    async fn next(&mut self) -> rumqttc::Publish {
        tokio::time::timeout(PATIENCE, self.rx.recv()).await.expect("a message within the deadline").expect("open")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn item(metric: &str, value: f64, ts: DateTime<Utc>) -> Value {
    json!({ "metric": metric, "value": value, "ts": rfc3339(ts) })
}

/// All readings of `metric` in the last day or so (the tests' readings are within hours).
async fn readings(app: &TestApp, token: &str, device: Uuid, metric: &str) -> Vec<(DateTime<Utc>, f64)> {
    let to = Utc::now() + chrono::Duration::hours(1);
    all_raw(app, token, device, metric, to - chrono::Duration::days(2), to, 10_000).await
}

/// Polls until `metric` holds at least `n` readings (or the deadline passes) and returns them.
async fn wait_for_readings(
    app: &TestApp,
    token: &str,
    device: Uuid,
    metric: &str,
    n: usize,
) -> Vec<(DateTime<Utc>, f64)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = readings(app, token, device, metric).await;
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "only {} of {n} `{metric}` readings arrived: {got:?}", got.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes the same reading again and again until it is stored: a subscriber that is still
/// connecting would not get a message published before it subscribed. Later copies are
/// duplicates and change nothing.
async fn publish_until_stored(app: &TestApp, token: &str, port: u16, device: Uuid, metric: &str) {
    let payload = json!([item(metric, 1.0, this_hour() - chrono::Duration::minutes(30))]).to_string();
    let deadline = Instant::now() + PATIENCE;
    loop {
        publish(port, &telemetry_topic(device), payload.clone(), false).await;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if !readings(app, token, device, metric).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(Instant::now() < deadline, "the subscriber never stored `{metric}` of {device}");
    }
}

/// Polls a counter until it reaches `at_least`; returns its value.
async fn wait_for_counter(app: &TestApp, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = metric_value(app, series).await;
        if v >= at_least {
            return v;
        }
        assert!(Instant::now() < deadline, "{series} is {v}, expected at least {at_least}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

// ---------------------------------------------------------------------------------------------
// Desired state published to the device
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_desired_state_change_is_published_retained_to_the_device() {
    let client_id = unique_client_id();
    let mut app = spawn_mqtt_app(SHARED_PORT, &client_id).await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let token = gh.owner.access.clone();
    publish_until_stored(&app, &token, SHARED_PORT, dev.id, "probe").await;
    let topic = desired_topic(dev.id);
    let mut sub = Subscriber::new(SHARED_PORT, &topic).await;

    let put = |body: Value| {
        authed(&app, Method::PUT, &format!("/api/v1/devices/{}/desired", dev.id), &token).json(&body).send()
    };
    let first = json!({ "fan": true, "target": 21.5, "mode": { "night": false } });
    let res = json_of(put(first.clone()).await.unwrap(), 200).await;
    assert_eq!(res["desiredVersion"], 1, "{res}");
    let msg = sub.next().await;
    assert_eq!(msg.topic, topic);
    let payload: Value = serde_json::from_slice(&msg.payload).expect("JSON payload");
    assert_eq!(payload, json!({ "desired": first, "desiredVersion": 1 }));

    let second = json!({ "fan": false });
    let res = json_of(put(json!({ "fan": false, "ifVersion": 1 })).await.unwrap(), 200).await;
    assert_eq!(res["desiredVersion"], 2, "{res}");
    let payload: Value = serde_json::from_slice(&sub.next().await.payload).unwrap();
    assert_eq!(payload, json!({ "desired": second, "desiredVersion": 2 }));
    drop(sub);

    // A device that subscribes later gets the latest one, retained.
    let mut late = Subscriber::new(SHARED_PORT, &topic).await;
    let msg = late.next().await;
    assert!(msg.retain, "retained");
    let payload: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(payload, json!({ "desired": second, "desiredVersion": 2 }));
    drop(late);

    // Leave no retained message behind on the shared broker.
    publish(SHARED_PORT, &topic, Vec::new(), true).await;
    finish(&mut app, SHARED_PORT, &client_id).await;
}

// ---------------------------------------------------------------------------------------------
// Broker hooks
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "hook-secret-0123456789";
const SERVER_USER: &str = "mash-server";
const SERVER_PASS: &str = "server-pass";

/// An app with the hooks on, whose own MQTT identity is `SERVER_USER`. Its broker address is
/// a closed port: the hooks do not need the subscriber to be connected.
async fn hooks_app() -> TestApp {
    let closed = TcpListener::bind((HOST, 0)).unwrap().local_addr().unwrap().port();
    let url = format!("mqtt://{SERVER_USER}:{SERVER_PASS}@{HOST}:{closed}");
    let client_id = unique_client_id();
    spawn_app_with(
        &[("MQTT_URL", url.as_str()), ("MQTT_CLIENT_ID", client_id.as_str()), ("MQTT_AUTH_SECRET", SECRET)],
        Router::new(),
    )
    .await
}

async fn hook(app: &TestApp, name: &str, secret: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(&format!("/api/v1/mqtt/{name}"))).json(&body);
    if let Some(s) = secret {
        req = req.header("x-mqtt-secret", s);
    }
    req.send().await.unwrap()
}

async fn hook_form(app: &TestApp, name: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    app.client
        .post(app.url(&format!("/api/v1/mqtt/{name}")))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap()
}

async fn allowed(res: reqwest::Response, superuser: bool) {
    let body = json_of(res, 200).await;
    assert_eq!(body, json!({ "result": "allow", "is_superuser": superuser, "ok": true }));
}

async fn denied(res: reqwest::Response, name: &str) {
    assert_error(res, 403, &format!("/api/v1/mqtt/{name}")).await;
}

#[tokio::test]
async fn hooks_are_absent_without_a_secret_and_refuse_a_wrong_one() {
    let plain = spawn_app_with(&[], Router::new()).await;
    let body = json!({ "username": "x", "password": "y", "topic": "t", "acc": 1 });
    for name in ["auth", "acl", "superuser"] {
        let path = format!("/api/v1/mqtt/{name}");
        assert_error(hook(&plain, name, Some(SECRET), body.clone()).await, 404, &path).await;
    }

    let app = hooks_app().await;
    for name in ["auth", "acl", "superuser"] {
        let path = format!("/api/v1/mqtt/{name}");
        assert_error(hook(&app, name, None, body.clone()).await, 401, &path).await;
        assert_error(hook(&app, name, Some("wrong"), body.clone()).await, 401, &path).await;
        assert_error(hook(&app, name, Some(&format!("{SECRET}x")), body.clone()).await, 401, &path).await;
        assert_error(hook(&app, name, Some(""), body.clone()).await, 401, &path).await;
        let res =
            app.client.post(app.url(&path)).header("authorization", "Bearer wrong").json(&body).send().await.unwrap();
        assert_error(res, 401, &path).await;
    }
    // The right secret either way.
    let res = app
        .client
        .post(app.url("/api/v1/mqtt/superuser"))
        .header("authorization", format!("Bearer {SECRET}"))
        .json(&json!({ "username": SERVER_USER }))
        .send()
        .await
        .unwrap();
    allowed(res, true).await;
    allowed(hook(&app, "superuser", Some(SECRET), json!({ "username": SERVER_USER })).await, true).await;
}

#[tokio::test]
async fn the_auth_hook_accepts_a_device_with_its_own_token_and_the_server() {
    let app = hooks_app().await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let other = create_device(&app, &gh.owner, gh.grower_id, "other").await;
    let auth = |username: String, password: &str| json!({ "clientid": username.clone(), "username": username, "password": password });

    allowed(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &dev.token)).await, false).await;
    // A device must connect under its own id: another client id (the server's persistent
    // session above all) or none at all is refused, so no device can take over a session.
    for clientid in [Some("mash-ingest".to_string()), Some(other.id.to_string()), Some("c1".to_string()), None] {
        let mut body = json!({ "username": dev.id, "password": dev.token });
        if let Some(c) = clientid {
            body["clientid"] = json!(c);
        }
        denied(hook(&app, "auth", Some(SECRET), body).await, "auth").await;
    }
    allowed(hook(&app, "auth", Some(SECRET), auth(SERVER_USER.into(), SERVER_PASS)).await, true).await;
    // Brokers may send a form instead of JSON.
    let id = dev.id.to_string();
    allowed(hook_form(&app, "auth", &[("clientid", &id), ("username", &id), ("password", &dev.token)]).await, false)
        .await;
    allowed(hook_form(&app, "auth", &[("username", SERVER_USER), ("password", SERVER_PASS)]).await, true).await;

    for (username, password) in [
        (dev.id.to_string(), format!("{}x", dev.token)),
        (dev.id.to_string(), other.token.clone()),
        (other.id.to_string(), dev.token.clone()),
        (dev.id.to_string(), String::new()),
        ("not-a-uuid".to_string(), dev.token.clone()),
        (Uuid::now_v7().to_string(), dev.token.clone()),
        (SERVER_USER.to_string(), "wrong".to_string()),
        (SERVER_USER.to_string(), String::new()),
    ] {
        denied(hook(&app, "auth", Some(SECRET), auth(username, &password)).await, "auth").await;
    }
    denied(hook_form(&app, "auth", &[("username", &id), ("password", "nope")]).await, "auth").await;

    // A rotated token no longer authenticates; the new one does. A deleted device never.
    let res = authed(&app, Method::POST, &format!("/api/v1/devices/{}/rotate-token", dev.id), &gh.owner.access)
        .send()
        .await
        .unwrap();
    let new_token = json_of(res, 200).await["deviceToken"].as_str().unwrap().to_string();
    denied(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &dev.token)).await, "auth").await;
    allowed(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &new_token)).await, false).await;
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", dev.id), &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    denied(hook(&app, "auth", Some(SECRET), auth(dev.id.to_string(), &new_token)).await, "auth").await;

    // A body that is not the hook's shape is a 400.
    let res = hook(&app, "auth", Some(SECRET), json!({ "password": "x" })).await;
    assert_error(res, 400, "/api/v1/mqtt/auth").await;
}

#[tokio::test]
async fn the_acl_hook_lets_a_device_publish_and_read_only_its_own_topics() {
    let app = hooks_app().await;
    let (gh, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    let other = create_device(&app, &gh.owner, gh.grower_id, "other").await;
    let acl = |username: &str, topic: String, acc: Value| json!({ "username": username, "topic": topic, "acc": acc });
    let me = dev.id.to_string();

    for acc in [json!(2), json!("2"), json!("publish")] {
        allowed(hook(&app, "acl", Some(SECRET), acl(&me, telemetry_topic(dev.id), acc)).await, false).await;
    }
    for acc in [json!(1), json!(4), json!("subscribe")] {
        allowed(hook(&app, "acl", Some(SECRET), acl(&me, desired_topic(dev.id), acc)).await, false).await;
    }
    let refused = [
        (telemetry_topic(other.id), json!(2)),
        (desired_topic(other.id), json!(1)),
        (desired_topic(dev.id), json!(2)),
        (desired_topic(dev.id), json!("publish")),
        (telemetry_topic(dev.id), json!(1)),
        (telemetry_topic(dev.id), json!(4)),
        (telemetry_topic(dev.id), json!("subscribe")),
        (telemetry_topic(dev.id), json!(3)),
        (desired_topic(dev.id), json!(3)),
        ("mash/devices/+/telemetry".to_string(), json!(4)),
        ("mash/devices/#".to_string(), json!(4)),
        ("#".to_string(), json!(1)),
        (format!("mash/devices/{}/telemetry/extra", dev.id), json!(2)),
        (format!("other/{}/telemetry", dev.id), json!(2)),
    ];
    for (topic, acc) in refused {
        denied(hook(&app, "acl", Some(SECRET), acl(&me, topic, acc)).await, "acl").await;
    }
    // An unknown device, or a username that is no device.
    let ghost = Uuid::now_v7();
    denied(hook(&app, "acl", Some(SECRET), acl(&ghost.to_string(), telemetry_topic(ghost), json!(2))).await, "acl")
        .await;
    denied(hook(&app, "acl", Some(SECRET), acl("someone", telemetry_topic(dev.id), json!(2))).await, "acl").await;

    // The server's identity may do anything.
    allowed(hook(&app, "acl", Some(SECRET), acl(SERVER_USER, "mash/devices/+/telemetry".into(), json!(4))).await, true)
        .await;
    allowed(hook(&app, "acl", Some(SECRET), acl(SERVER_USER, desired_topic(dev.id), json!(2))).await, true).await;

    // Form-encoded, as mosquitto-go-auth sends it.
    let t = telemetry_topic(dev.id);
    allowed(hook_form(&app, "acl", &[("username", &me), ("topic", &t), ("acc", "2"), ("clientid", "c")]).await, false)
        .await;
    denied(hook_form(&app, "acl", &[("username", &me), ("topic", &t), ("acc", "1")]).await, "acl").await;

    // A deleted device loses its topics.
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", dev.id), &gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    denied(hook(&app, "acl", Some(SECRET), acl(&me, telemetry_topic(dev.id), json!(2))).await, "acl").await;

    // An access value that means nothing is a 400 naming it.
    let res = hook(&app, "acl", Some(SECRET), acl(&other.id.to_string(), telemetry_topic(other.id), json!(9))).await;
    let body = assert_error(res, 400, "/api/v1/mqtt/acl").await;
    assert_eq!(body["details"][0]["field"], "acc", "{body}");
}

#[tokio::test]
async fn only_the_server_is_a_superuser() {
    let app = hooks_app().await;
    let (_, dev) = greenhouse_with_device(&app, "mqtt sensor").await;
    allowed(hook(&app, "superuser", Some(SECRET), json!({ "username": SERVER_USER })).await, true).await;
    allowed(hook_form(&app, "superuser", &[("username", SERVER_USER)]).await, true).await;
    for username in [dev.id.to_string(), "admin".to_string(), String::new(), format!("{SERVER_USER} ")] {
        denied(hook(&app, "superuser", Some(SECRET), json!({ "username": username })).await, "superuser").await;
    }
    denied(hook_form(&app, "superuser", &[("username", &dev.id.to_string())]).await, "superuser").await;

    // Without credentials in MQTT_URL the server has no hook identity at all.
    let app = spawn_app_with(&[("MQTT_AUTH_SECRET", SECRET)], Router::new()).await;
    denied(hook(&app, "superuser", Some(SECRET), json!({ "username": SERVER_USER })).await, "superuser").await;
    denied(hook(&app, "auth", Some(SECRET), json!({ "username": SERVER_USER, "password": SERVER_PASS })).await, "auth")
        .await;
}
