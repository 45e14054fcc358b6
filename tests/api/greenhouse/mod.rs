//! CONTRACT.md "Growers, devices, telemetry" (the greenhouse part): growers and their members
//! and chambers, device provisioning with one-time tokens, rotation and soft deletion,
//! presence (`online`/`offline`), desired/reported state with its versions, the audit rows of
//! these changes, and above all tenancy: every route tried across two growers answers 404 for
//! the other grower's resources (403 for a telemetry batch), and nothing changes there.

mod devices;
mod domain;
mod growers;
mod listing;
mod state;
mod tenancy;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    accounts::{Account, get_authed, json_of, send_json},
    greenhouse::as_device,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `GET` as a person, 200 asserted.
async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    json_of(get_authed(app, path, token).await, 200).await
}

async fn device_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    as_device(app, Method::GET, path, token).send().await.unwrap()
}

async fn create_chamber(app: &TestApp, by: &Account, grower_id: Uuid, name: &str) -> Uuid {
    let path = format!("/api/v1/growers/{grower_id}/chambers");
    let body = json_of(send_json(app, Method::POST, &path, &by.access, json!({ "name": name })).await, 201).await;
    assert_eq!(body["growerId"], grower_id.to_string(), "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// A token never shows up in a body other than the one that issues it.
fn assert_no_token(body: &Value, token: &str) {
    let text = body.to_string();
    assert!(!text.contains(token), "the device token appears in {text}");
    let secret = token.split_once('.').unwrap().1;
    assert!(!text.contains(secret), "the token's secret appears in {text}");
    for key in ["deviceToken", "tokenHash", "tokenId", "token_hash", "token_id"] {
        assert!(!text.contains(&format!("\"{key}\"")), "key {key} in {text}");
    }
}

fn bare(path: &str) -> &str {
    path.split('?').next().unwrap()
}
