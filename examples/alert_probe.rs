//! Sends one reading at a time that alternately breaks and clears an alert rule (used by
//! `bench/scenarios/80_alerts.sh` to measure the time from a batch's 202 to its alert event).
//!
//! ```text
//! alert_probe URL DEVICE_ID DEVICE_TOKEN METRIC INTERVAL_MS SECONDS
//! ```
//! Every INTERVAL_MS, a batch of one reading of METRIC, valued 100 then 0 then 100…, so each
//! batch opens or resolves the alert of a `gt 50` rule. Prints one JSON line: batches
//! accepted, errors, and the 202 latency p50/p99.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        anyhow::bail!("usage: alert_probe URL DEVICE_ID DEVICE_TOKEN METRIC INTERVAL_MS SECONDS");
    }
    let url = format!("{}/api/v1/telemetry/batch", args[1].trim_end_matches('/'));
    let (device, auth, metric) = (&args[2], format!("Device {}", args[3]), &args[4]);
    let interval = Duration::from_millis(args[5].parse()?);
    let deadline = Instant::now() + Duration::from_secs_f64(args[6].parse()?);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::new());
    let mut next = Instant::now();
    let mut high = true;
    while Instant::now() < deadline {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let ts = (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true);
        let value = if high { 100.0 } else { 0.0 };
        let body = format!(r#"[{{"deviceId":"{device}","metric":"{metric}","value":{value},"ts":"{ts}"}}]"#);
        let t0 = Instant::now();
        let res = client
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().as_u16() == 202 => {
                ok += 1;
                high = !high;
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            _ => errors += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0.0);
    println!("{}", serde_json::json!({"batches": ok, "errors": errors, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}));
    Ok(())
}
