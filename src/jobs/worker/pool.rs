//! The worker loop: up to `JOB_CONCURRENCY` jobs at once, claimed in batches, finished jobs
//! removed together; and the queue gauges.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, task::JoinHandle};

use super::{Completer, execute, leases};
use crate::{jobs::queue, state::AppState};

/// The worker loop: up to `JOB_CONCURRENCY` jobs at once, woken by enqueues (in process, and by
/// `NOTIFY` on PostgreSQL) and by a poll.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    tasks.extend(crate::jobs::wake::spawn_listener(state));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(uuid::Uuid, i32)>();
    let completer_state = state.clone();
    tasks.push(tokio::spawn(async move {
        let state = completer_state;
        let mut batch = Vec::new();
        while done_rx.recv_many(&mut batch, 500).await > 0 {
            // A failure leaves the jobs leased; they run again when the lease ends (runs are
            // idempotent), so one retry here is enough.
            if let Err(e) = gated(&state, queue::complete_many(&state.db, &batch)).await {
                tracing::warn!(error = %e, jobs = batch.len(), "could not remove finished jobs; retrying once");
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Err(e) = gated(&state, queue::complete_many(&state.db, &batch)).await {
                    tracing::warn!(error = %e, jobs = batch.len(), "finished jobs stay leased and will run again");
                }
            }
            batch.clear();
        }
    }));
    let state = state.clone();
    tasks.push(tokio::spawn(async move {
        let completer: Completer = Some(done_tx);
        let leases = leases(&state);
        let concurrency = state.config.jobs.concurrency;
        // At most `concurrency` jobs run at once; up to as many more wait claimed, so claims come
        // in batches (one statement per several jobs) while the running ones finish. A waiting
        // job waits for at most one running job, which its lease (twice its timeout) allows.
        let running = Arc::new(Semaphore::new(concurrency));
        let claimed = Arc::new(Semaphore::new(concurrency * 2));
        let poll = state.config.jobs.poll_interval;
        let mut last_recovery = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            // Claim when at least `concurrency` claim slots are free (all of them when idle).
            let mut permits = Vec::with_capacity(concurrency * 2);
            for _ in 0..concurrency {
                let Ok(p) = claimed.clone().acquire_owned().await else { return };
                permits.push(p);
            }
            while let Ok(p) = claimed.clone().try_acquire_owned() {
                permits.push(p);
            }
            let now = state.clock.now();
            if last_recovery.elapsed() >= Duration::from_secs(5) {
                last_recovery = std::time::Instant::now();
                match gated(&state, queue::recover_expired(&state.db, now)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "recovered jobs whose lease expired"),
                    Err(e) => tracing::warn!(error = %e, "could not recover expired job leases"),
                }
            }
            let claim = queue::claim_leased(&state.db, &leases, &state.jobs.worker_id, now, permits.len() as u64);
            let jobs = match gated(&state, claim).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim jobs; retrying");
                    drop(permits);
                    tokio::time::sleep(poll).await;
                    continue;
                }
            };
            let full = jobs.len() == permits.len();
            for job in jobs {
                let slot = permits.pop().expect("one claim slot per claimed job");
                let (state, completer, running) = (state.clone(), completer.clone(), running.clone());
                tokio::spawn(async move {
                    let Ok(_run) = running.acquire_owned().await else { return };
                    execute(&state, job, &completer).await;
                    drop(slot);
                });
            }
            drop(permits);
            if !full {
                // Nothing more is due: sleep until woken or the poll interval passes.
                tokio::select! {
                    () = state.jobs.wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
    }));
    tasks
}

/// Runs a write in this process's turn at SQLite's write lock ([`crate::db::Db::gate`]).
async fn gated<T>(state: &AppState, write: impl std::future::Future<Output = T>) -> T {
    let _gate = state.db.gate().await;
    write.await
}

/// Refreshes the queue gauges every few seconds.
pub fn spawn_gauges(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match queue::counts(&state.db).await {
                Ok(counts) => state.metrics.set_job_gauges(&counts),
                Err(e) => tracing::debug!(error = %e, "could not count jobs"),
            }
        }
    })
}
