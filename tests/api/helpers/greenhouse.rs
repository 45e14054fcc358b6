//! Greenhouse fixtures shared by the greenhouse, telemetry and MQTT tests: a grower with an
//! owner, devices with their tokens, and batch posting.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, admin, authed, json_of, user_with_role},
};

/// A grower created by an admin, with one GROWER user as its OWNER.
pub struct Greenhouse {
    pub admin: Account,
    pub owner: Account,
    pub grower_id: Uuid,
}

pub async fn create_grower(app: &TestApp, admin: &Account, name: &str) -> Uuid {
    let res = authed(app, Method::POST, "/api/v1/growers", &admin.access)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    json_of(res, 201).await["id"].as_str().unwrap().parse().unwrap()
}

pub async fn add_member(app: &TestApp, by: &Account, grower_id: Uuid, user_id: Uuid, role: &str) -> reqwest::Response {
    authed(app, Method::POST, &format!("/api/v1/growers/{grower_id}/members"), &by.access)
        .json(&json!({ "userId": user_id, "role": role }))
        .send()
        .await
        .unwrap()
}

/// A new grower with a fresh admin and a fresh OWNER.
pub async fn greenhouse(app: &TestApp) -> Greenhouse {
    let admin = admin(app).await;
    greenhouse_by(app, &admin).await
}

/// A new grower (by an existing admin) with a fresh OWNER.
pub async fn greenhouse_by(app: &TestApp, admin: &Account) -> Greenhouse {
    let grower_id = create_grower(app, admin, &format!("Grower {}", Uuid::now_v7().simple())).await;
    let owner = user_with_role(app, "owner", "GROWER").await;
    json_of(add_member(app, admin, grower_id, owner.id, "OWNER").await, 201).await;
    Greenhouse { admin: admin.clone(), owner, grower_id }
}

/// A device and its one-time token.
pub struct Device {
    pub id: Uuid,
    pub token: String,
    pub body: Value,
}

pub async fn create_device(app: &TestApp, by: &Account, grower_id: Uuid, name: &str) -> Device {
    let res = authed(app, Method::POST, "/api/v1/devices", &by.access)
        .json(&json!({ "growerId": grower_id, "name": name }))
        .send()
        .await
        .unwrap();
    let body = json_of(res, 201).await;
    Device {
        id: body["device"]["id"].as_str().unwrap().parse().unwrap(),
        token: body["deviceToken"].as_str().unwrap().to_string(),
        body,
    }
}

/// `POST /telemetry/batch` with `Authorization: <auth>` (`Bearer …` or `Device …`).
pub async fn post_batch(app: &TestApp, auth: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/api/v1/telemetry/batch")).header("authorization", auth).json(body).send().await.unwrap()
}

pub fn bearer(a: &Account) -> String {
    format!("Bearer {}", a.access)
}

pub fn device_auth(d: &Device) -> String {
    format!("Device {}", d.token)
}

/// One reading as JSON.
pub fn reading(device: Uuid, metric: &str, value: f64, ts: chrono::DateTime<chrono::Utc>) -> Value {
    json!({ "deviceId": device, "metric": metric, "value": value, "ts": ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true) })
}
