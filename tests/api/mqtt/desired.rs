//! Desired state published to the device, retained, on `mash/devices/{id}/desired`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    accounts::{authed, json_of},
    greenhouse::greenhouse_with_device,
};

use super::{
    SHARED_PORT, Subscriber, desired_topic, finish, publish, publish_until_stored, spawn_mqtt_app, unique_client_id,
};

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
