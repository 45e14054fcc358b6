//! The live state (`GET /devices/{id}/state`): the latest reading per metric, never going back;
//! and the state and history of unknown or foreign devices.

use chrono::Duration;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    accounts::{authed, get_authed, user_with_role},
    assert_error,
    greenhouse::{accepted, add_member, bearer, create_device, device_auth, post_batch, reading},
    spawn_app,
    telemetry::{all_raw, history, parse_ts, this_hour},
};

use super::{setup, state_of};

// ---------------------------------------------------------------------------------------------
// Live state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn live_state_holds_the_latest_reading_per_metric_and_never_goes_back() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let owner = &s.gh.owner.access;
    let t = this_hour() - Duration::hours(1);
    let at = |mins: i64| t + Duration::minutes(mins);

    let fresh = state_of(&app, owner, s.device.id).await;
    assert_eq!(fresh["deviceId"], s.device.id.to_string());
    assert_eq!(fresh["reported"], json!({}), "{fresh}");

    // Out of order inside one batch: the newest wins.
    let body = json!([
        reading(s.device.id, "air.temp", 2.0, at(20)),
        reading(s.device.id, "air.temp", 3.0, at(30)),
        reading(s.device.id, "air.temp", 1.0, at(10)),
        reading(s.device.id, "air.humidity", 55.5, at(5)),
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (4, 0));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], 3.0, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), at(30));
    assert_eq!(st["reported"]["air.humidity"]["value"], 55.5, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.humidity"]["ts"]), at(5));
    assert_eq!(st["reported"].as_object().unwrap().len(), 2, "{st}");

    // An older reading sent later is stored but does not replace the newer live value.
    let body = json!([reading(s.device.id, "air.temp", 99.0, at(25))]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 0));
    // Neither does a resent reading with the same ts and another value.
    let body = json!([reading(s.device.id, "air.temp", 77.0, at(30))]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (0, 1));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], 3.0, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), at(30));
    let raw = all_raw(&app, owner, s.device.id, "air.temp", t, at(60), 100).await;
    assert_eq!(raw, vec![(at(10), 1.0), (at(20), 2.0), (at(25), 99.0), (at(30), 3.0)]);

    // A newer one does, also from a person and with sub-second precision.
    let newer = at(31) + Duration::microseconds(654_321);
    let body = json!([reading(s.device.id, "air.temp", -4.25, newer)]);
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.owner), &body).await).await, (1, 0));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], -4.25, "{st}");
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), newer);
    assert_eq!(st["reported"]["air.humidity"]["value"], 55.5, "other metrics untouched: {st}");

    // Another device's readings stay with that device.
    let other = create_device(&app, &s.gh.owner, s.gh.grower_id, "other").await;
    let body = json!([reading(other.id, "air.temp", 1000.0, at(50))]);
    assert_eq!(accepted(post_batch(&app, &device_auth(&other), &body).await).await, (1, 0));
    let st = state_of(&app, owner, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], -4.25, "{st}");
    let st = state_of(&app, owner, other.id).await;
    assert_eq!(st["reported"], json!({ "air.temp": { "value": 1000.0, "ts": st["reported"]["air.temp"]["ts"] } }));
    assert_eq!(parse_ts(&st["reported"]["air.temp"]["ts"]), at(50));
}

#[tokio::test]
async fn state_and_history_of_an_unknown_or_foreign_device_are_not_found() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(1);
    let body = json!([reading(s.device.id, "air.temp", 1.0, t0)]);
    assert_eq!(accepted(post_batch(&app, &device_auth(&s.device), &body).await).await, (1, 0));
    let q = [("metric", "air.temp".to_string())];

    let unknown = Uuid::now_v7();
    for token in [&s.gh.owner.access, &s.gh.admin.access] {
        let path = format!("/api/v1/devices/{unknown}/state");
        assert_error(get_authed(&app, &path, token).await, 404, &path).await;
        let path = format!("/api/v1/devices/{unknown}/telemetry");
        assert_error(history(&app, token, unknown, &q).await, 404, &path).await;
    }
    // A GROWER of another grower sees nothing of this one.
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    let path = format!("/api/v1/devices/{}/state", s.device.id);
    assert_error(get_authed(&app, &path, &outsider.access).await, 404, &path).await;
    let path = format!("/api/v1/devices/{}/telemetry", s.device.id);
    assert_error(history(&app, &outsider.access, s.device.id, &q).await, 404, &path).await;
    // Without credentials: 401.
    let res = app.get(&format!("/api/v1/devices/{}/state", s.device.id)).await;
    assert_error(res, 401, &format!("/api/v1/devices/{}/state", s.device.id)).await;
    let res = app.get(&format!("/api/v1/devices/{}/telemetry?metric=air.temp", s.device.id)).await;
    assert_error(res, 401, &path).await;

    // A member reads both; a deleted device is gone from both.
    let member = user_with_role(&app, "member", "GROWER").await;
    assert_eq!(add_member(&app, &s.gh.owner, s.gh.grower_id, member.id, "MEMBER").await.status(), 201);
    let st = state_of(&app, &member.access, s.device.id).await;
    assert_eq!(st["reported"]["air.temp"]["value"], 1.0, "{st}");
    let res = authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", s.device.id), &s.gh.owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let spath = format!("/api/v1/devices/{}/state", s.device.id);
    assert_error(get_authed(&app, &spath, &s.gh.owner.access).await, 404, &spath).await;
    assert_error(history(&app, &s.gh.owner.access, s.device.id, &q).await, 404, &path).await;
}
