//! `POST /telemetry/batch`: accepted and duplicate counts (a resent batch, copies sent at once),
//! microsecond UTC timestamps, and who may write: a device its own readings, a person those of
//! the growers they may write to.

use chrono::Duration;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    accounts::{authed, json_of, user_with_role},
    assert_error,
    greenhouse::{accepted, add_member, bearer, create_device, device_auth, greenhouse, post_batch, reading},
    spawn_app,
    telemetry::{all_raw, metric_value, parse_ts, rfc3339, stored_count, this_hour},
};

use super::{BATCH, refused, series, setup, state_of};

// ---------------------------------------------------------------------------------------------
// Ingestion: accepted, duplicates, who may write
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_resent_batch_is_counted_as_duplicates_and_stored_once() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(3);
    let items = series(s.device.id, "air.temp", t0, 50);
    let auth = device_auth(&s.device);

    let ingested_before = metric_value(&app, "telemetry_readings_ingested_total{source=\"http\"}").await;
    assert_eq!(accepted(post_batch(&app, &auth, &json!(items)).await).await, (50, 0));
    assert_eq!(stored_count(&app, s.device.id).await, 50);
    // The answer got lost; the device sends the same batch again.
    assert_eq!(accepted(post_batch(&app, &auth, &json!(items)).await).await, (0, 50));
    assert_eq!(stored_count(&app, s.device.id).await, 50, "nothing stored twice");

    // Half old, half new.
    let mut mixed: Vec<Value> = items[25..].to_vec();
    mixed.extend(series(s.device.id, "air.temp", t0 + Duration::seconds(50), 25));
    assert_eq!(accepted(post_batch(&app, &auth, &json!(mixed)).await).await, (25, 25));
    assert_eq!(stored_count(&app, s.device.id).await, 75);

    // Repeats inside one batch: the second copy is a duplicate even with another value.
    let t = t0 + Duration::minutes(30);
    let inner = json!([
        reading(s.device.id, "air.humidity", 40.0, t),
        reading(s.device.id, "air.humidity", 41.0, t),
        reading(s.device.id, "air.humidity", 42.0, t + Duration::seconds(1)),
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &inner).await).await, (2, 1));
    assert_eq!(stored_count(&app, s.device.id).await, 77);

    // A duplicate with a different value never overwrites the stored reading, and the live
    // state agrees with what is stored.
    let owner = &s.gh.owner.access;
    let again = json!([reading(s.device.id, "air.temp", 999.0, t0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &again).await).await, (0, 1));
    let raw = all_raw(&app, owner, s.device.id, "air.temp", t0, t0 + Duration::hours(1), 1000).await;
    assert_eq!(raw.len(), 75);
    assert_eq!(raw[0], (t0, 0.0));
    let hum = all_raw(&app, owner, s.device.id, "air.humidity", t0, t0 + Duration::hours(1), 1000).await;
    assert_eq!(hum.len(), 2);
    assert_eq!(hum[0].0, t);
    assert!(hum[0].1 == 40.0 || hum[0].1 == 41.0, "{hum:?}");
    let state = state_of(&app, owner, s.device.id).await;
    assert_eq!(state["reported"]["air.humidity"]["value"], 42.0, "{state}");
    assert_eq!(state["reported"]["air.temp"]["value"], 12.0, "{state}");
    assert_eq!(parse_ts(&state["reported"]["air.temp"]["ts"]), t0 + Duration::seconds(74));

    // The same readings under another metric or device are not duplicates.
    let other = create_device(&app, &s.gh.owner, s.gh.grower_id, "other").await;
    let body = json!([reading(s.device.id, "air.co2", 1.0, t0), reading(other.id, "air.temp", 1.0, t0)]);
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.owner), &body).await).await, (2, 0));

    let ingested = metric_value(&app, "telemetry_readings_ingested_total{source=\"http\"}").await;
    assert_eq!(ingested - ingested_before, 79.0);
    let dups = metric_value(&app, "telemetry_readings_duplicate_total{source=\"http\"}").await;
    assert_eq!(dups, 50.0 + 25.0 + 1.0 + 1.0);
}

#[tokio::test]
async fn timestamps_are_kept_to_the_microsecond_and_compared_in_utc() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let owner = &s.gh.owner.access;
    let t = this_hour() - Duration::hours(2);
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let item = |ts: String, value: f64| json!({ "metric": "leaf.temp", "value": value, "ts": ts });

    // Nanoseconds are truncated: these two are the same reading.
    let body = json!([item(format!("{base}.1234567Z"), 1.0), item(format!("{base}.1234568Z"), 2.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 1));
    let body = json!([item(format!("{base}.123456Z"), 3.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (0, 1), "the same microsecond");
    // One microsecond later is another reading.
    let body = json!([item(format!("{base}.123457Z"), 4.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 0));

    // An offset is the same instant as its UTC form.
    let plus2 = (t + Duration::hours(2)).format("%Y-%m-%dT%H:%M:%S").to_string();
    let body = json!([item(format!("{plus2}.5+02:00"), 5.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (1, 0));
    let body = json!([item(format!("{base}.500000Z"), 6.0)]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (0, 1));

    let raw = all_raw(&app, owner, s.device.id, "leaf.temp", t, t + Duration::seconds(1), 100).await;
    let first = t + Duration::microseconds(123_456);
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert_eq!(raw[0].0, first);
    assert!(raw[0].1 == 1.0 || raw[0].1 == 2.0, "{raw:?}");
    assert_eq!(raw[1], (first + Duration::microseconds(1), 4.0));
    assert_eq!(raw[2], (t + Duration::milliseconds(500), 5.0));
    assert_eq!(stored_count(&app, s.device.id).await, 3);
}

#[tokio::test]
async fn concurrent_copies_of_a_batch_store_each_reading_once() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let items = json!(series(s.device.id, "root.temp", this_hour() - Duration::hours(4), 500));
    let auth = device_auth(&s.device);
    let sends = (0..4).map(|_| post_batch(&app, &auth, &items));
    let results = futures_util::future::join_all(sends).await;
    let mut acc = 0;
    let mut dup = 0;
    for res in results {
        let (a, d) = accepted(res).await;
        acc += a;
        dup += d;
    }
    assert_eq!((acc, dup), (500, 1500));
    assert_eq!(stored_count(&app, s.device.id).await, 500);
}

#[tokio::test]
async fn a_device_writes_only_its_own_readings() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let other = create_device(&app, &s.gh.owner, s.gh.grower_id, "neighbour").await;
    let t0 = this_hour() - Duration::hours(1);
    let auth = device_auth(&s.device);

    // deviceId may be left out: it means the calling device.
    let body = json!([
        { "metric": "air.temp", "value": 21.5, "ts": rfc3339(t0) },
        { "deviceId": s.device.id, "metric": "air.temp", "value": 22.0, "ts": rfc3339(t0 + Duration::seconds(1)) },
    ]);
    assert_eq!(accepted(post_batch(&app, &auth, &body).await).await, (2, 0));
    assert_eq!(stored_count(&app, s.device.id).await, 2);

    // Another device's id anywhere refuses the whole batch.
    let body = json!([
        reading(s.device.id, "air.temp", 1.0, t0 + Duration::seconds(5)),
        reading(s.device.id, "air.temp", 2.0, t0 + Duration::seconds(6)),
        reading(other.id, "air.temp", 3.0, t0 + Duration::seconds(7)),
    ]);
    let rejected_before = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"forbidden\"}").await;
    refused(post_batch(&app, &auth, &body).await, 403, &["items[2].deviceId"]).await;
    assert_eq!(stored_count(&app, s.device.id).await, 2, "nothing of a refused batch is stored");
    assert_eq!(stored_count(&app, other.id).await, 0);
    let rejected = metric_value(&app, "telemetry_rejected_total{source=\"http\",reason=\"forbidden\"}").await;
    assert_eq!(rejected - rejected_before, 1.0);

    // A wrong or missing credential.
    let body = json!([reading(s.device.id, "air.temp", 1.0, t0 + Duration::seconds(9))]);
    let fake = format!("Device {}x", s.device.token);
    assert_error(post_batch(&app, &fake, &body).await, 401, BATCH).await;
    let res = app.client.post(app.url(BATCH)).json(&body).send().await.unwrap();
    assert_error(res, 401, BATCH).await;

    // A rotated token stops working; a deleted device can no longer send.
    let res = authed(&app, Method::POST, &format!("/api/v1/devices/{}/rotate-token", s.device.id), &s.gh.owner.access)
        .send()
        .await
        .unwrap();
    let new_token = json_of(res, 200).await["deviceToken"].as_str().unwrap().to_string();
    assert_error(post_batch(&app, &auth, &body).await, 401, BATCH).await;
    assert_eq!(accepted(post_batch(&app, &format!("Device {new_token}"), &body).await).await, (1, 0));
    let res = authed(&app, Method::DELETE, &format!("/api/v1/devices/{}", s.device.id), &s.gh.owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let body = json!([reading(s.device.id, "air.temp", 1.0, t0 + Duration::seconds(10))]);
    assert_error(post_batch(&app, &format!("Device {new_token}"), &body).await, 401, BATCH).await;
    assert_eq!(stored_count(&app, s.device.id).await, 3);
}

#[tokio::test]
async fn a_person_needs_write_access_to_each_devices_grower() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let t0 = this_hour() - Duration::hours(1);
    let mine = s.device.id;
    let one = |dev: Uuid, secs: i64| json!([reading(dev, "air.temp", secs as f64, t0 + Duration::seconds(secs))]);

    // Owner, member and admin may write.
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.owner), &one(mine, 1)).await).await, (1, 0));
    let member = user_with_role(&app, "member", "GROWER").await;
    assert_eq!(add_member(&app, &s.gh.owner, s.gh.grower_id, member.id, "MEMBER").await.status(), 201);
    assert_eq!(accepted(post_batch(&app, &bearer(&member), &one(mine, 2)).await).await, (1, 0));
    assert_eq!(accepted(post_batch(&app, &bearer(&s.gh.admin), &one(mine, 3)).await).await, (1, 0));

    // A person must name the device.
    let body = json!([{ "metric": "air.temp", "value": 1.0, "ts": rfc3339(t0) }]);
    refused(post_batch(&app, &bearer(&s.gh.owner), &body).await, 400, &["items[0].deviceId"]).await;

    // Someone else's grower: another GROWER, a customer.
    let outsider = user_with_role(&app, "outsider", "GROWER").await;
    refused(post_batch(&app, &bearer(&outsider), &one(mine, 4)).await, 403, &["items[0].deviceId"]).await;
    let customer = user_with_role(&app, "customer", "CUSTOMER").await;
    assert_error(post_batch(&app, &bearer(&customer), &one(mine, 5)).await, 403, BATCH).await;

    // A batch mixing a writable device with another grower's: refused whole, naming the index.
    let theirs_gh = greenhouse(&app).await;
    let theirs = create_device(&app, &theirs_gh.owner, theirs_gh.grower_id, "theirs").await;
    let body = json!([
        reading(mine, "air.temp", 6.0, t0 + Duration::seconds(6)),
        reading(mine, "air.temp", 7.0, t0 + Duration::seconds(7)),
        reading(theirs.id, "air.temp", 8.0, t0 + Duration::seconds(8)),
        reading(mine, "air.temp", 9.0, t0 + Duration::seconds(9)),
    ]);
    refused(post_batch(&app, &bearer(&s.gh.owner), &body).await, 403, &["items[2].deviceId"]).await;
    // A device that does not exist is not writable either.
    let body = json!([
        reading(mine, "air.temp", 6.0, t0 + Duration::seconds(6)),
        reading(Uuid::now_v7(), "air.temp", 1.0, t0)
    ]);
    refused(post_batch(&app, &bearer(&s.gh.admin), &body).await, 403, &["items[1].deviceId"]).await;
    assert_eq!(stored_count(&app, mine).await, 3, "refused batches store nothing");
    assert_eq!(stored_count(&app, theirs.id).await, 0);

    // A deleted device takes no more readings from people either.
    let res =
        authed(&app, Method::DELETE, &format!("/api/v1/devices/{mine}"), &s.gh.owner.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    refused(post_batch(&app, &bearer(&s.gh.owner), &one(mine, 10)).await, 403, &["items[0].deviceId"]).await;
    assert_eq!(stored_count(&app, mine).await, 3);
}
