//! Background tasks that run beside the HTTP server and stop with it.

use tokio::task::JoinHandle;

use crate::state::AppState;

/// Starts every background task of the process; the caller aborts them at shutdown.
pub fn spawn_all(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut tasks = crate::auth::revocation::spawn_background(state);
    tasks.push(crate::mail::spawn_delivery(state.clone()));
    tasks.push(crate::telemetry::maintenance::spawn(state.clone()));
    tasks.extend(crate::telemetry::mqtt::spawn(state));
    tasks.extend(crate::shop::spawn_background(state));
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
