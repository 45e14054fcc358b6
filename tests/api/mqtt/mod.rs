//! CONTRACT.md "Growers, devices, telemetry", MQTT: the subscriber on `mash/devices/+/telemetry`
//! (real broker, same validation and dedup as HTTP, bad messages counted and survived, nothing
//! lost while the server is away thanks to the persistent session, reconnection after a broker
//! restart), the retained desired-state publish, and the broker's HTTP auth/ACL hooks.
//!
//! The machine's Mosquitto (127.0.0.1:1883, anonymous) serves most tests; the restart test runs
//! its own `mosquitto` on a free loopback port. Every app gets its own `MQTT_CLIENT_ID`, and its
//! persistent session is removed from the broker at the end.

mod desired;
mod hooks;
mod subscriber;

use std::time::Duration;

use axum::Router;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};
use tokio::{sync::mpsc, time::Instant};
use uuid::Uuid;

use crate::helpers::{
    TestApp, spawn_app_with,
    telemetry::{all_raw, metric_value, rfc3339, this_hour},
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
