//! Background tasks that run beside the HTTP server and stop with it.

use tokio::task::JoinHandle;

use crate::state::AppState;

/// Starts every background task of the process; the caller aborts them at shutdown.
pub fn spawn_all(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut tasks = crate::auth::revocation::spawn_background(state);
    tasks.extend(crate::telemetry::mqtt::spawn(state));
    tasks.extend(crate::shop::spawn_background(state));
    tasks.extend(crate::alerts::spawn_background(state));
    tasks.extend(crate::realtime::spawn_background(state));
    if state.config.jobs.concurrency > 0 {
        tasks.extend(spawn_workers(state));
    }
    // The queue gauges are database-wide: every API instance exports them.
    tasks.push(crate::jobs::worker::spawn_gauges(state));
    let pruned = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            pruned.auth.abuse.prune();
        }
    }));
    tasks
}

/// The job workers and the schedule of periodic jobs (`mash worker` runs only these).
pub fn spawn_workers(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut tasks = crate::jobs::worker::spawn(state);
    tasks.push(crate::jobs::schedule::spawn(state));
    tasks
}
