//! Desired state (versioned, guarded by `ifVersion`, concurrent writes applied one by one, the
//! same document no change) and reported state with readings and `inSync`; NUL characters in
//! any greenhouse input never cause a 500.

use chrono::{SubsecRound, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    accounts::{LOCALHOST, audit_rows, authed, get_authed, json_of, send_json},
    assert_error, distinct_detail_fields,
    greenhouse::{create_device, device_auth, greenhouse, post_batch, reading, report},
    spawn_app, ts_of,
};

use super::{device_get, read};

// ---------------------------------------------------------------------------------------------
// Desired and reported state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn desired_state_is_versioned_and_guarded_by_if_version() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let state_path = format!("/api/v1/devices/{}/state", dev.id);
    let path = format!("/api/v1/devices/{}/desired", dev.id);
    let put = |body: Value| send_json(&app, Method::PUT, &path, &g.owner.access, body);

    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["deviceId"], dev.id.to_string());
    assert_eq!(s["desired"], json!({}));
    assert_eq!(s["desiredVersion"], 0);
    assert_eq!(s["reported"], json!({}));
    assert!(s["lastSeenAt"].is_null() && s["desiredUpdatedAt"].is_null() && s["reportedState"].is_null(), "{s}");
    assert_eq!(s["inSync"], true, "nothing asked yet: {s}");

    // v0 -> v1 with the right ifVersion; ifVersion is not part of the document.
    let out = json_of(put(json!({ "fan": "on", "light": { "level": 50 }, "ifVersion": 0 })).await, 200).await;
    assert_eq!(out, json!({ "desired": { "fan": "on", "light": { "level": 50 } }, "desiredVersion": 1 }));

    // A stale ifVersion: 409, nothing changes.
    let err = assert_error(put(json!({ "fan": "off", "ifVersion": 0 })).await, 409, &path).await;
    assert_eq!(err["error"], "Conflict");
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["desired"], json!({ "fan": "on", "light": { "level": 50 } }));
    assert_eq!(s["desiredVersion"], 1);
    let first_update = ts_of(&s["desiredUpdatedAt"]);

    // The same document again is no change: same version, with or without ifVersion.
    for same in [
        json!({ "light": { "level": 50 }, "fan": "on" }),
        json!({ "fan": "on", "light": { "level": 50 }, "ifVersion": 1 }),
    ] {
        let out = json_of(put(same).await, 200).await;
        assert_eq!(out["desiredVersion"], 1, "{out}");
    }
    assert_eq!(ts_of(&read(&app, &state_path, &g.owner.access).await["desiredUpdatedAt"]), first_update);

    // A new document replaces the old one (no merge), one version up.
    let out = json_of(put(json!({ "light": { "level": 60 } })).await, 200).await;
    assert_eq!(out, json!({ "desired": { "light": { "level": 60 } }, "desiredVersion": 2 }));
    let out = json_of(put(json!({ "light": { "level": 70 }, "ifVersion": 2 })).await, 200).await;
    assert_eq!(out["desiredVersion"], 3);

    // Bad input: 400, nothing changes.
    for bad in [
        json!({ "fan": "x", "ifVersion": "3" }),
        json!({ "fan": "x", "ifVersion": 2.5 }),
        json!({ "fan": "x", "ifVersion": -1 }),
    ] {
        let err = assert_error(put(bad.clone()).await, 400, &path).await;
        assert_eq!(distinct_detail_fields(&err), vec!["ifVersion"], "{bad}: {err}");
    }
    for bad in [json!([{ "fan": "x" }]), json!("fan"), json!(3), Value::Null] {
        assert_error(put(bad).await, 400, &path).await;
    }
    let res = authed(&app, Method::PUT, &path, &g.owner.access)
        .header("content-type", "application/json")
        .body("{fan")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, &path).await;
    let res = authed(&app, Method::PUT, &path, &g.owner.access).body("fan=on").send().await.unwrap();
    assert_error(res, 415, &path).await;
    let big = json!({ "blob": "x".repeat(17 * 1024) });
    assert_error(put(big).await, 400, &path).await;
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!((s["desired"].clone(), s["desiredVersion"].clone()), (json!({ "light": { "level": 70 } }), json!(3)));

    // The device reads what people wrote; a person's token cannot read it as the device.
    let mine = json_of(device_get(&app, "/api/v1/devices/me/desired", &dev.token).await, 200).await;
    assert_eq!(mine, json!({ "desired": { "light": { "level": 70 } }, "desiredVersion": 3 }));
    let me_desired = "/api/v1/devices/me/desired";
    assert_error(get_authed(&app, me_desired, &g.owner.access).await, 401, me_desired).await;

    // One audit row per change, by who made it.
    let rows = audit_rows(&app, "device.desired_changed").await;
    let versions: Vec<_> = rows.iter().map(|r| r.details.clone().unwrap()["desiredVersion"].clone()).collect();
    assert_eq!(versions, vec![json!(1), json!(2), json!(3)], "{rows:?}");
    assert!(rows.iter().all(|r| r.user_id == Some(g.owner.id)
        && r.resource_id.as_deref() == Some(dev.id.to_string().as_str())
        && r.ip_address.as_deref() == Some(LOCALHOST)));
}

#[tokio::test]
async fn reported_state_and_readings_show_in_the_state_and_in_sync_follows_versions() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let state_path = format!("/api/v1/devices/{}/state", dev.id);
    let desired_path = format!("/api/v1/devices/{}/desired", dev.id);
    let put = |body: Value| send_json(&app, Method::PUT, &desired_path, &g.owner.access, body);

    // The latest reading per metric shows under `reported`.
    let ts = Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(10);
    let batch = json!([
        reading(dev.id, "t", 21.5, ts - chrono::Duration::seconds(5)),
        reading(dev.id, "t", 22.5, ts),
        reading(dev.id, "rh", 80.0, ts)
    ]);
    json_of(post_batch(&app, &device_auth(&dev), &batch).await, 202).await;
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["reported"]["t"]["value"], 22.5, "{s}");
    assert_eq!(ts_of(&s["reported"]["t"]["ts"]), ts);
    assert_eq!(s["reported"]["rh"]["value"], 80.0);
    ts_of(&s["lastSeenAt"]);

    assert_eq!(json_of(put(json!({ "fan": "on" })).await, 200).await["desiredVersion"], 1);
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["inSync"], false, "asked, not yet applied: {s}");

    // The device says it applied version 1.
    let out =
        json_of(report(&app, &dev.token, json!({ "fan": "on", "rpm": 1200, "desiredVersion": 1 })).await, 200).await;
    assert_eq!(out["deviceId"], dev.id.to_string());
    assert_eq!(out["reportedVersion"], 1);
    assert_eq!(out["inSync"], true, "{out}");
    assert_eq!(out["reportedState"]["rpm"], 1200);
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["inSync"], true, "{s}");
    assert_eq!(s["reportedVersion"], 1);
    assert_eq!(s["reportedState"]["fan"], "on");
    assert_eq!(s["desired"], json!({ "fan": "on" }));
    ts_of(&s["reportedAt"]);
    assert_eq!(s["reported"]["t"]["value"], 22.5, "readings are not replaced by a report");

    // A new desired version puts it out of sync until the device catches up.
    assert_eq!(json_of(put(json!({ "fan": "off" })).await, 200).await["desiredVersion"], 2);
    assert_eq!(read(&app, &state_path, &g.owner.access).await["inSync"], false);
    let out = json_of(report(&app, &dev.token, json!({ "fan": "on", "desiredVersion": 1 })).await, 200).await;
    assert_eq!(out["inSync"], false, "still on version 1: {out}");
    let out = json_of(report(&app, &dev.token, json!({ "fan": "off", "desiredVersion": 2 })).await, 200).await;
    assert_eq!(out["inSync"], true, "{out}");
    assert_eq!(read(&app, &state_path, &g.owner.access).await["inSync"], true);

    // Bad reports are refused and change nothing; only the device itself may report.
    let reported = "/api/v1/devices/me/reported";
    for (bad, field) in [
        (json!({ "desiredVersion": "2" }), Some("desiredVersion")),
        (json!({ "desiredVersion": -1 }), Some("desiredVersion")),
        (json!([1]), None),
    ] {
        let err = assert_error(report(&app, &dev.token, bad).await, 400, reported).await;
        if let Some(f) = field {
            assert_eq!(distinct_detail_fields(&err), vec![f], "{err}");
        }
    }
    let res =
        send_json(&app, Method::POST, reported, &g.owner.access, json!({ "fan": "on", "desiredVersion": 9 })).await;
    assert_error(res, 401, reported).await;
    let res = app.client.post(app.url(reported)).json(&json!({ "desiredVersion": 9 })).send().await.unwrap();
    assert_error(res, 401, reported).await;
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["reportedVersion"], 2);
    assert_eq!(s["reportedState"], json!({ "fan": "off", "desiredVersion": 2 }));
}

#[tokio::test]
async fn concurrent_desired_writes_apply_one_by_one_and_if_version_lets_exactly_one_win() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = format!("/api/v1/devices/{}/desired", dev.id);
    let state_path = format!("/api/v1/devices/{}/state", dev.id);
    const WRITERS: i64 = 6;

    // Without ifVersion nobody asked for a conditional write: every change applies, each
    // gets its own version, and the last one stays.
    let puts = (0..WRITERS).map(|i| send_json(&app, Method::PUT, &path, &g.owner.access, json!({ "writer": i })));
    let mut versions = Vec::new();
    let mut last = Value::Null;
    for res in futures_util::future::join_all(puts).await {
        let body = json_of(res, 200).await;
        let v = body["desiredVersion"].as_i64().unwrap();
        if v == WRITERS {
            last = body["desired"].clone();
        }
        versions.push(v);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=WRITERS).collect::<Vec<_>>());
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["desiredVersion"], WRITERS);
    assert_eq!(s["desired"], last);

    // With the same ifVersion, exactly one wins; the others are told to re-read.
    let puts = (0..WRITERS)
        .map(|i| send_json(&app, Method::PUT, &path, &g.owner.access, json!({ "racer": i, "ifVersion": WRITERS })));
    let mut winners = Vec::new();
    for res in futures_util::future::join_all(puts).await {
        match res.status().as_u16() {
            200 => winners.push(res.json::<Value>().await.unwrap()),
            _ => {
                assert_error(res, 409, &path).await;
            }
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0]["desiredVersion"], WRITERS + 1);
    let s = read(&app, &state_path, &g.owner.access).await;
    assert_eq!(s["desiredVersion"], WRITERS + 1);
    assert_eq!(s["desired"], winners[0]["desired"]);
    assert_eq!(audit_rows(&app, "device.desired_changed").await.len() as i64, WRITERS + 1);
}

#[tokio::test]
async fn the_same_desired_document_is_no_change_whatever_numbers_it_holds() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let path = format!("/api/v1/devices/{}/desired", dev.id);
    let doc = json!({ "setpoint": 21.5, "ratio": 0.1, "count": 3, "big": 1e16, "tiny": 1e-7, "huge": 12345678901234567890u64 });
    assert_eq!(
        json_of(send_json(&app, Method::PUT, &path, &g.owner.access, doc.clone()).await, 200).await["desiredVersion"],
        1
    );
    for _ in 0..2 {
        let out = json_of(send_json(&app, Method::PUT, &path, &g.owner.access, doc.clone()).await, 200).await;
        assert_eq!(out["desiredVersion"], 1, "the stored document is the one sent: {out}");
    }
    let mut same = doc.clone();
    same["ifVersion"] = json!(1);
    assert_eq!(
        json_of(send_json(&app, Method::PUT, &path, &g.owner.access, same).await, 200).await["desiredVersion"],
        1
    );
    assert_eq!(audit_rows(&app, "device.desired_changed").await.len(), 1);
}

/// Client input never makes a 500: a NUL character (valid JSON, `\u0000`) in any text the
/// greenhouse routes store is either stored or refused with 400, on every backend.
#[tokio::test]
async fn nul_characters_in_greenhouse_input_never_cause_a_500() {
    let app = spawn_app().await;
    let g = greenhouse(&app).await;
    let dev = create_device(&app, &g.owner, g.grower_id, "controller").await;
    let nul = "bad\u{0}name";
    let grower = format!("/api/v1/growers/{}", g.grower_id);
    let device = format!("/api/v1/devices/{}", dev.id);
    let attempts: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/api/v1/growers".into(), json!({ "name": nul })),
        (Method::PATCH, grower.clone(), json!({ "name": nul })),
        (Method::POST, format!("{grower}/chambers"), json!({ "name": nul })),
        (Method::POST, "/api/v1/devices".into(), json!({ "growerId": g.grower_id, "name": nul })),
        (Method::POST, "/api/v1/devices".into(), json!({ "growerId": g.grower_id, "name": "ok", "kind": nul })),
        (
            Method::POST,
            "/api/v1/devices".into(),
            json!({ "growerId": g.grower_id, "name": "ok", "metadata": { "k": nul } }),
        ),
        (Method::PATCH, device.clone(), json!({ "metadata": { nul: 1 } })),
        (Method::PUT, format!("{device}/desired"), json!({ "mode": nul })),
    ];
    let mut answers = Vec::new();
    for (method, path, body) in attempts {
        let res = send_json(&app, method.clone(), &path, &g.admin.access, body.clone()).await;
        answers.push((format!("{method} {path} {body}"), path, res));
    }
    let res = report(&app, &dev.token, json!({ "mode": nul })).await;
    answers.push(("POST /devices/me/reported".into(), "/api/v1/devices/me/reported".into(), res));
    let failed: Vec<String> =
        answers.iter().filter(|(_, _, res)| res.status().is_server_error()).map(|(what, _, _)| what.clone()).collect();
    assert!(failed.is_empty(), "5xx for client input: {failed:#?}");
    for (_, path, res) in answers {
        if !res.status().is_success() {
            assert_error(res, 400, &path).await;
        }
    }
}
