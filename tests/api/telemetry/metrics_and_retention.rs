//! The telemetry metrics (ingested, duplicate and rejected readings) and retention: readings
//! older than the configured days are removed (on PostgreSQL, whole old day partitions are
//! dropped and partitions are kept ahead).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{
    TestApp,
    accounts::{get_authed, json_of},
    assert_error,
    greenhouse::{accepted, device_auth, post_batch},
    spawn_app,
    telemetry::{stored_count, this_hour},
};

use super::{BATCH, refused, series, setup};

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_ingested_duplicate_and_rejected_readings() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let auth = device_auth(&s.device);
    let t0 = this_hour() - Duration::hours(2);
    let items = json!(series(s.device.id, "air.temp", t0, 30));
    accepted(post_batch(&app, &auth, &items).await).await;
    accepted(post_batch(&app, &auth, &items).await).await;
    refused(post_batch(&app, &auth, &json!([])).await, 400, &["items"]).await;
    let res = app.client.post(app.url(BATCH)).header("authorization", &auth).body("[]").send().await.unwrap();
    assert_error(res, 415, BATCH).await;

    let text = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "telemetry_readings_ingested_total{source=\"http\"} 30",
        "telemetry_readings_duplicate_total{source=\"http\"} 30",
        "telemetry_rejected_total{source=\"http\",reason=\"invalid\"} 1",
        "telemetry_rejected_total{source=\"http\",reason=\"content_type\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("# TYPE telemetry_readings_ingested counter"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

/// Day partitions of `sensor_readings` on PostgreSQL (empty on SQLite).
async fn partition_days(app: &TestApp) -> Vec<String> {
    let db = &app.state.db;
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Vec::new();
    }
    let stmt = Statement::from_string(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'sensor_readings' ORDER BY 1",
    );
    db.query_all_raw(stmt).await.unwrap().iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

#[tokio::test]
async fn retention_removes_readings_older_than_the_configured_days_and_keeps_the_rest() {
    // The old readings go in through an app without retention: an app with it runs the same
    // maintenance at start, which could otherwise remove them before they are counted.
    let app = spawn_app().await;
    let s = setup(&app).await;
    let now = Utc::now();
    // Old readings cannot come in through the API (the accepted window follows retention), so
    // they are written the way a long-running install would have stored them.
    let at = |ago: Duration, metric: &str| mash::telemetry::store::Reading {
        device_id: s.device.id,
        metric: metric.into(),
        ts: DateTime::from_timestamp_micros((now - ago).timestamp_micros()).unwrap(),
        value: 1.0,
    };
    let mut rows = vec![
        at(Duration::days(5), "t"),
        at(Duration::days(5) + Duration::minutes(1), "t"),
        at(Duration::days(4), "h"),
        at(Duration::hours(1), "t"),
        at(Duration::minutes(5), "h"),
    ];
    let partitions = mash::telemetry::store::Partitions::default();
    mash::telemetry::store::insert(&app.state.db, &partitions, &mut rows, &[]).await.unwrap();
    assert_eq!(stored_count(&app, s.device.id).await, 5);
    let old_day = format!("sensor_readings_p{}", (now - Duration::days(5)).format("%Y%m%d"));
    if app.state.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        assert!(partition_days(&app).await.contains(&old_day), "the old day got its partition");
    }

    let pruner = app.spawn_sibling(&[("TELEMETRY_RETENTION_DAYS", "2")]).await;
    mash::telemetry::maintenance::run_once(&pruner.state).await.unwrap();

    assert_eq!(stored_count(&app, s.device.id).await, 2, "only the last two days remain");
    let body = json_of(
        get_authed(
            &app,
            &format!(
                "/api/v1/devices/{}/telemetry?metric=t&from={}",
                s.device.id,
                (now - Duration::days(10)).to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            &s.gh.owner.access,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["points"].as_array().unwrap().len(), 1, "{body}");
    if app.state.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let days = partition_days(&app).await;
        assert!(!days.contains(&old_day), "whole old partitions are dropped: {days:?}");
        let today = format!("sensor_readings_p{}", now.format("%Y%m%d"));
        let ahead = format!("sensor_readings_p{}", (now + Duration::days(3)).format("%Y%m%d"));
        assert!(days.contains(&today) && days.contains(&ahead), "partitions are kept ahead: {days:?}");
    }
    // A second round changes nothing.
    mash::telemetry::maintenance::run_once(&pruner.state).await.unwrap();
    assert_eq!(stored_count(&app, s.device.id).await, 2);
}
