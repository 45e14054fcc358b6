//! Job queue throughput (used by `bench/scenarios/80_alerts.sh`): no-op jobs enqueued one per
//! transaction by several producers while the queue's own workers run them.
//!
//! ```text
//! job_load DATABASE_URL JOBS PRODUCERS CONCURRENCY
//! ```
//! Migrates the database, starts the workers (`JOB_CONCURRENCY` = CONCURRENCY) as `mash serve`
//! would, enqueues JOBS `noop` jobs from PRODUCERS tasks (each enqueue its own statement, then a
//! wake-up, like an application request), and waits until every one has run and left the table.
//! Prints one JSON line: jobs, seconds from the first enqueue to the last completion, jobs/s.

use std::{collections::HashMap, time::Instant};

use mash::{
    AppState, Config,
    jobs::{self, Noop},
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sea_orm_migration::MigratorTrait;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!("usage: job_load DATABASE_URL JOBS PRODUCERS CONCURRENCY");
    }
    let jobs_total: usize = args[2].parse()?;
    let producers: usize = args[3].parse()?;
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", args[1].as_str()),
        ("JOB_CONCURRENCY", args[4].as_str()),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "warn"),
        ("MASH_DATA_DIR", "./data"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_map(&vars, false)?;
    mash::logging::init(config.log_format, &config.log_level);
    let db = mash::db::connect(&config.database).await?;
    mash::migration::Migrator::up(&db, None).await?;
    let state = AppState::new(config, db)?;
    let workers = jobs::worker::spawn(&state);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let state = state.clone();
        let n = jobs_total / producers + usize::from(p < jobs_total % producers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                jobs::enqueue(&state.db, &Noop {}).await?;
                state.jobs.wake();
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let enqueued = started.elapsed().as_secs_f64();
    loop {
        let left =
            jobs::entity::Entity::find().filter(jobs::entity::Column::JobType.eq("noop")).count(&state.db).await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    for w in workers {
        w.abort();
    }
    println!(
        "{}",
        serde_json::json!({
            "jobs": jobs_total,
            "seconds": secs,
            "enqueue_seconds": enqueued,
            "jobs_per_sec": jobs_total as f64 / secs,
        })
    );
    Ok(())
}
