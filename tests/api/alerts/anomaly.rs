//! The anomaly kind, checked against an EWMA detector computed here: where it fires, across a
//! restart, and reading by reading with its alpha, warm-up and k.

use chrono::Duration;
use serde_json::json;

use crate::helpers::{
    alerts::{alerts_of, list_alerts, new_rule},
    greenhouse::{create_device, greenhouse, reading},
    spawn_app_with,
};

use super::{app, base, send};

/// An independent EWMA anomaly detector: for each reading, whether it breaches the baseline
/// built from the readings before it (mean/variance per the documented update).
fn anomaly_breaches(series: &[f64], alpha: f64, warmup: i64, k: f64) -> Vec<bool> {
    let (mut mean, mut var, mut n) = (0.0_f64, 0.0_f64, 0_i64);
    series
        .iter()
        .map(|&x| {
            let sd = var.max(0.0).sqrt();
            let breach = n >= warmup && sd > 0.0 && (x - mean).abs() > k * sd;
            if n == 0 {
                mean = x;
                var = 0.0;
            } else {
                let diff = x - mean;
                let incr = alpha * diff;
                mean += incr;
                var = (1.0 - alpha) * (var + diff * incr);
            }
            n += 1;
            breach
        })
        .collect()
}

#[tokio::test]
async fn anomaly_fires_exactly_where_an_independent_ewma_says_and_survives_a_restart() {
    // The default detector: alpha 0.1, 20 readings of warm-up, k = 3.
    let mut series: Vec<f64> =
        (0..40).map(|i| 20.0 + [0.12, -0.08, 0.05, -0.15, 0.10, -0.03, 0.07, -0.11, 0.02, 0.09][i % 10]).collect();
    series[5] = 27.0; // an outlier during warm-up
    series[30] = 20.6; // a bump, within 3σ
    series.push(23.0); // the spike (index 40)
    series.push(20.05); // back to normal (index 41)
    let expected = anomaly_breaches(&series, 0.1, 20, 3.0);
    let spike = expected.iter().position(|b| *b).expect("the series breaches somewhere");
    assert_eq!(spike, 40, "the test series is meant to breach first at the spike");
    assert!(!expected[41]);
    assert!(
        anomaly_breaches(&series, 0.1, 2, 3.0)[5],
        "the early outlier would breach if warm-up were not honoured (so the test can tell)"
    );
    assert!(
        !anomaly_breaches(&series[..=40], 0.1, 20, 3.0)[..40].iter().any(|b| *b),
        "nothing before the spike breaches"
    );

    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap().to_string();
    let overrides = [("JOB_CONCURRENCY", "0"), ("MASH_DATA_DIR", dir.as_str())];
    let mut first = spawn_app_with(&overrides, axum::Router::new()).await;
    let gh = greenhouse(&first).await;
    let dev = create_device(&first, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &first,
        &gh.owner,
        json!({"growerId": gh.grower_id, "metric": "temp", "kind": "anomaly", "severity": "warning"}),
    )
    .await;
    assert!(rule["alpha"].is_null() && rule["warmupSamples"].is_null(), "defaults are not stored: {rule}");
    let t0 = base();
    let at = |i: usize| t0 + Duration::seconds(10 * i as i64);

    // Half the series through the first process, one reading per batch, checking each step.
    let half = 25;
    for (i, v) in series.iter().enumerate().take(half) {
        send(&first, &gh.owner, vec![reading(dev.id, "temp", *v, at(i))]).await;
        assert!(alerts_of(&first, &gh).await.is_empty(), "no alert may open at reading {i} ({v})");
    }

    // A restart: the baseline lives in the database.
    first.begin_shutdown().await.unwrap().unwrap();
    let second = first.spawn_sibling(&overrides).await;
    for (i, v) in series.iter().enumerate().skip(half) {
        send(&second, &gh.owner, vec![reading(dev.id, "temp", *v, at(i))]).await;
        let list = alerts_of(&second, &gh).await;
        if i < spike {
            assert!(list.is_empty(), "no alert may open at reading {i} ({v}): {list:?}");
        } else if i == spike {
            assert_eq!(list.len(), 1, "{list:?}");
            assert_eq!(list[0]["status"], "active");
            assert_eq!(list[0]["value"], 23.0, "the alert opens on the spike itself");
            assert_eq!(list[0]["count"], 1);
            assert_eq!(list[0]["ruleId"], rule["id"]);
        } else {
            assert_eq!(list.len(), 1, "{list:?}");
            assert_eq!(list[0]["status"], "resolved", "a normal reading clears the anomaly");
        }
    }
}

#[tokio::test]
async fn anomaly_honours_alpha_warmup_and_k_reading_by_reading() {
    let (alpha, warmup, k) = (0.3, 5_i64, 2.0);
    let series = [
        10.0, 30.0, 10.4, 9.7, 10.1, // warm-up (30 would breach anything warmed up)
        10.2, 9.9, 13.0, 10.0, 10.1, 9.8, 10.3, 6.0, 10.0, 10.2, 9.9, 10.1, 10.0, 14.0, 14.5, 10.1,
    ];
    let expected = anomaly_breaches(&series, alpha, warmup, k);
    assert!(expected.iter().filter(|b| **b).count() >= 2, "the series fires more than once: {expected:?}");
    assert!(expected[warmup as usize..].iter().any(|b| !*b));
    assert_ne!(
        expected,
        anomaly_breaches(&series, 0.1, 20, 3.0),
        "the explicit parameters make a difference the test can see"
    );

    let app = app().await;
    let gh = greenhouse(&app).await;
    let dev = create_device(&app, &gh.owner, gh.grower_id, "sensor").await;
    let rule = new_rule(
        &app,
        &gh.owner,
        json!({"growerId": gh.grower_id, "deviceId": dev.id, "metric": "temp", "kind": "anomaly", "threshold": k,
               "alpha": alpha, "warmupSamples": warmup, "severity": "info"}),
    )
    .await;
    assert_eq!(rule["alpha"], alpha);
    assert_eq!(rule["warmupSamples"], warmup);
    let t0 = base();
    for (i, (v, breach)) in series.iter().zip(&expected).enumerate() {
        send(&app, &gh.owner, vec![reading(dev.id, "temp", *v, t0 + Duration::seconds(i as i64))]).await;
        let active = list_alerts(&app, &gh.owner, &format!("growerId={}&status=active", gh.grower_id)).await;
        let active = active["data"].as_array().unwrap();
        if *breach {
            assert_eq!(active.len(), 1, "reading {i} ({v}) breaches: {active:?}");
            assert_eq!(active[0]["value"], *v, "reading {i}");
        } else {
            assert!(active.is_empty(), "reading {i} ({v}) does not breach: {active:?}");
        }
    }
}
