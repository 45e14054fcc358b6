//! Alert rules and alerts: every rule kind, the alert lifecycle and tenancy, with the job
//! queue driven by the test (`JOB_CONCURRENCY=0`, `run_jobs`) and time moved by the app's clock.

use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    auth::{authed, get_authed, json_of},
    fixtures::{bearer, create_device, greenhouse, post_batch, reading},
    helpers::spawn_app_with,
};

#[tokio::test]
async fn a_threshold_rule_opens_one_alert_and_publishes_it() {
    let app = spawn_app_with(&[("JOB_CONCURRENCY", "0")], axum::Router::new()).await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = authed(&app, Method::POST, "/api/v1/alert-rules", &gh.owner.access)
        .json(&json!({"growerId": gh.grower_id, "metric": "temp", "kind": "threshold", "op": "gt", "threshold": 30.0, "severity": "critical", "enabled": true}))
        .send()
        .await
        .unwrap();
    let rule = json_of(rule, 201).await;
    let mut events = app.state.events.subscribe();
    let t0 = Utc::now() - Duration::minutes(5);
    let batch = json!([reading(dev.id, "temp", 31.0, t0), reading(dev.id, "temp", 35.0, t0 + Duration::seconds(1))]);
    assert_eq!(post_batch(&app, &bearer(&gh.owner), &batch).await.status(), 202);
    assert!(app.run_jobs().await >= 2);
    let list: Value =
        json_of(get_authed(&app, &format!("/api/v1/alerts?growerId={}", gh.grower_id), &gh.owner.access).await, 200)
            .await;
    assert_eq!(list["meta"]["total"], 1, "{list}");
    let a = &list["data"][0];
    assert_eq!(a["ruleId"], rule["id"]);
    assert_eq!(a["status"], "active");
    assert_eq!(a["value"], 35.0);
    assert_eq!(a["count"], 2);
    let e = events.try_recv().expect("an event was published");
    assert_eq!(e.path, format!("/alerts/{}", gh.grower_id));
    assert_eq!(e.data["change"], "created");
}
