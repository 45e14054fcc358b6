//! Load generator for `POST /api/v1/telemetry/batch` (used by `bench/scenarios/50_telemetry.sh`
//! and `60_durability.sh`).
//!
//! ```text
//! ingest_load URL DEVICES_FILE BATCH CONCURRENCY SECONDS [RECORD_FILE]
//! ```
//! `DEVICES_FILE` holds one `<deviceId> <deviceToken>` per line; worker `w` sends as device
//! `w mod n` with `Authorization: Device <token>`. Every batch has `BATCH` readings over four
//! metrics with timestamps one microsecond apart, unique per device for the whole run (so
//! nothing is a duplicate). With `RECORD_FILE`, each acknowledged batch (202) is appended as
//! `<deviceId> <first ts µs> <last ts µs> <count>` before the next is sent: the client's
//! record of what the server promised to keep. The run stops after `SECONDS`, or when the
//! server has been unreachable for a second (it was killed).
//!
//! With `INGEST_RATE=<readings per second>` in the environment the workers pace themselves to
//! that total rate instead of sending as fast as the server answers.
//!
//! Prints one JSON line: readings accepted, batches, errors, elapsed seconds, readings/s and
//! batch latency percentiles.

use std::{
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};

struct Totals {
    readings: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    record: Option<Mutex<std::fs::File>>,
}

fn body(device: &str, first_us: i64, n: usize, buf: &mut String) {
    buf.clear();
    buf.push('[');
    for i in 0..n {
        let ts = DateTime::<Utc>::from_timestamp_micros(first_us + i as i64).unwrap_or_default();
        if i > 0 {
            buf.push(',');
        }
        let value = ((first_us + i as i64) % 10_000) as f64 / 100.0;
        buf.push_str(&format!(
            r#"{{"deviceId":"{device}","metric":"m{}","value":{value},"ts":"{}"}}"#,
            i % 4,
            ts.to_rfc3339_opts(SecondsFormat::Micros, true)
        ));
    }
    buf.push(']');
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider (the server installs ring at start).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        anyhow::bail!("usage: ingest_load URL DEVICES_FILE BATCH CONCURRENCY SECONDS [RECORD_FILE]");
    }
    let url = format!("{}/api/v1/telemetry/batch", args[1].trim_end_matches('/'));
    let devices: Vec<(String, String)> = std::fs::read_to_string(&args[2])?
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(d, t)| (d.to_string(), t.trim().to_string())))
        .collect();
    anyhow::ensure!(!devices.is_empty(), "no devices in {}", args[2]);
    let batch: usize = args[3].parse()?;
    let concurrency: usize = args[4].parse()?;
    let seconds: f64 = args[5].parse()?;
    let record = match args.get(6) {
        Some(path) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)),
        None => None,
    };
    let totals = Arc::new(Totals {
        readings: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latencies_us: Mutex::new(Vec::new()),
        record,
    });
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(concurrency).timeout(Duration::from_secs(30)).build()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    // Half an hour ago, so every timestamp is well inside the accepted window; each worker has
    // its own stretch of microseconds.
    let base_us = (Utc::now() - chrono::Duration::minutes(30)).timestamp_micros();
    // Paced: each worker sends one batch every `interval`, staggered across workers.
    let interval = std::env::var("INGEST_RATE")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(batch as f64 * concurrency as f64 / rate));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (device, token) = devices[w % devices.len()].clone();
        let (client, url, totals) = (client.clone(), url.clone(), totals.clone());
        let mut next_us = base_us + (w / devices.len()) as i64 * 1_000_000_000;
        workers.push(tokio::spawn(async move {
            let auth = format!("Device {token}");
            let mut buf = String::with_capacity(batch * 110);
            let mut down_since: Option<Instant> = None;
            let mut due = interval.map(|i| started + i.mul_f64(w as f64 / concurrency as f64));
            while Instant::now() < deadline {
                if let (Some(at), Some(i)) = (due, interval) {
                    tokio::time::sleep_until(at.into()).await;
                    due = Some(at + i);
                }
                body(&device, next_us, batch, &mut buf);
                let t0 = Instant::now();
                let res = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(buf.clone())
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().as_u16() == 202 => {
                        down_since = None;
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        let accepted = v["accepted"].as_u64().unwrap_or(0);
                        totals.readings.fetch_add(accepted, Ordering::Relaxed);
                        totals.batches.fetch_add(1, Ordering::Relaxed);
                        totals.latencies_us.lock().unwrap().push(t0.elapsed().as_micros() as u64);
                        if let Some(rec) = &totals.record {
                            let line = format!("{device} {next_us} {} {batch}\n", next_us + batch as i64 - 1);
                            rec.lock().unwrap().write_all(line.as_bytes()).ok();
                        }
                        next_us += batch as i64;
                    }
                    Ok(r) => {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("status {}: {}", r.status(), r.text().await.unwrap_or_default());
                        // The batch may or may not be stored; never reuse its timestamps.
                        next_us += batch as i64;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        next_us += batch as i64;
                        let since = *down_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(1) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let secs = started.elapsed().as_secs_f64().min(seconds).max(1e-9);
    let mut lat = totals.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    let readings = totals.readings.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "readings": readings,
            "batches": totals.batches.load(Ordering::Relaxed),
            "errors": totals.errors.load(Ordering::Relaxed),
            "seconds": secs,
            "readings_per_sec": readings as f64 / secs,
            "p50_ms": pct(0.5) as f64 / 1000.0,
            "p99_ms": pct(0.99) as f64 / 1000.0,
        })
    );
    Ok(())
}
