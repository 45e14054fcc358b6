//! Alert rules, alerts and their deliveries, shared by the alerts, notifications, realtime and
//! jobs tests.

use mash::alerts::entity::delivery;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use crate::helpers::{
    TestApp,
    accounts::{Account, authed, get_authed, json_of},
    greenhouse::Greenhouse,
};

/// Where alert rules are created and listed.
pub fn rules_path() -> &'static str {
    "/api/v1/alert-rules"
}

/// `POST /alert-rules` as `who`.
pub async fn post_rule(app: &TestApp, who: &Account, body: &Value) -> reqwest::Response {
    authed(app, Method::POST, rules_path(), &who.access).json(body).send().await.unwrap()
}

/// Creates a rule (201 asserted); the answer.
pub async fn new_rule(app: &TestApp, who: &Account, body: Value) -> Value {
    json_of(post_rule(app, who, &body).await, 201).await
}

/// `/alerts/{id}` of an alert id as it appears in an answer.
pub fn alert_path(id: &Value) -> String {
    format!("/api/v1/alerts/{}", id.as_str().expect("alert id"))
}

/// `POST /alerts/{id}/{action}` (`ack` or `resolve`).
pub async fn alert_action(app: &TestApp, who: &Account, id: &Value, action: &str) -> reqwest::Response {
    authed(app, Method::POST, &format!("{}/{action}", alert_path(id)), &who.access).send().await.unwrap()
}

/// `GET /alerts?{query}` as `who` (200 asserted).
pub async fn list_alerts(app: &TestApp, who: &Account, query: &str) -> Value {
    json_of(get_authed(app, &format!("/api/v1/alerts?{query}"), &who.access).await, 200).await
}

/// Every alert of a grower, newest first, as its owner sees them.
pub async fn alerts_of(app: &TestApp, gh: &Greenhouse) -> Vec<Value> {
    let page = list_alerts(app, &gh.owner, &format!("growerId={}&limit=100", gh.grower_id)).await;
    let data = page["data"].as_array().expect("a page of alerts").clone();
    assert_eq!(page["meta"]["total"], data.len(), "{page}");
    data
}

/// Delivery attempts whose `column` holds `value` (a channel, a target), oldest first.
pub async fn deliveries_by(app: &TestApp, column: delivery::Column, value: &str) -> Vec<delivery::Model> {
    delivery::Entity::find()
        .filter(column.eq(value))
        .order_by_asc(delivery::Column::CreatedAt)
        .order_by_asc(delivery::Column::Id)
        .all(&app.state.db)
        .await
        .expect("delivery query")
}
