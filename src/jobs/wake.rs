//! Waking workers when a job is enqueued. In the process, [`JobsState::wake`] after a commit.
//! Across instances, PostgreSQL's `NOTIFY mash_jobs` (sent with the insert, delivered at
//! commit) and a `LISTEN` task on every instance; SQLite has no other instance to wake (one
//! database file, one host), and its workers poll like everyone's do.
//!
//! This is the one place in the queue that asks which database it runs on:
//! [`crosses_instances`].
//!
//! [`JobsState::wake`]: super::JobsState::wake

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The PostgreSQL `NOTIFY` channel that wakes workers.
pub const CHANNEL: &str = "mash_jobs";

/// Whether enqueues on this database are announced to other instances. The cross-instance
/// wake-up is PostgreSQL's `LISTEN`/`NOTIFY`, which SQLite has no equivalent of (nor needs).
fn crosses_instances(backend: DatabaseBackend) -> bool {
    backend == DatabaseBackend::Postgres
}

/// Tells every listening instance that jobs were enqueued: at commit inside a transaction,
/// at once outside one. Nothing on SQLite.
pub(super) async fn announce<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    if crosses_instances(db.get_database_backend()) {
        db.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await?;
    }
    Ok(())
}

/// The task that turns [`announce`] from any instance into a local wake-up; `None` on SQLite.
pub(super) fn spawn_listener(state: &AppState) -> Option<JoinHandle<()>> {
    crosses_instances(state.db.get_database_backend()).then(|| tokio::spawn(listen(state.clone())))
}

async fn listen(state: AppState) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let pool = state.db.get_postgres_connection_pool();
        let listened = async {
            let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            // Anything enqueued while we were not listening is found by this wake-up.
            state.jobs.wake();
            loop {
                listener.recv().await?;
                state.jobs.wake();
            }
            #[expect(unreachable_code, reason = "the loop only ends with an error")]
            Ok::<(), sea_orm::sqlx::Error>(())
        }
        .await;
        if let Err(e) = listened {
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "job wake-up listener lost");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
