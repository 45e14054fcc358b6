//! Greenhouse fixtures: a grower with an owner, devices with their tokens, requests as a
//! device, and posting telemetry batches.

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

/// A new grower with a fresh OWNER, and one device of it named `device_name`.
pub async fn greenhouse_with_device(app: &TestApp, device_name: &str) -> (Greenhouse, Device) {
    let gh = greenhouse(app).await;
    let device = create_device(app, &gh.owner, gh.grower_id, device_name).await;
    (gh, device)
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

/// The `(accepted, duplicates)` of a batch's answer (202 asserted).
pub async fn accepted(res: reqwest::Response) -> (u64, u64) {
    let body = json_of(res, 202).await;
    (body["accepted"].as_u64().expect("accepted"), body["duplicates"].as_u64().expect("duplicates"))
}

/// Posts a batch (202 asserted); returns `(accepted, duplicates)`.
pub async fn send_readings(app: &TestApp, auth: &str, items: &[Value]) -> (u64, u64) {
    accepted(post_batch(app, auth, &Value::Array(items.to_vec())).await).await
}

/// A request as a device: `Authorization: Device <token>`.
pub fn as_device(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).header("authorization", format!("Device {token}"))
}

/// `POST /devices/me/reported` as the device with this token.
pub async fn report(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    as_device(app, Method::POST, "/api/v1/devices/me/reported", token).json(&body).send().await.unwrap()
}

/// Reports `doc` as `dev` (200 asserted); the answer.
pub async fn report_ok(app: &TestApp, dev: &Device, doc: Value) -> Value {
    json_of(report(app, &dev.token, doc).await, 200).await
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
