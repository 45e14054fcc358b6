//! The queue's process-wide state: the local wake-up, the registry, this worker's id.

use uuid::Uuid;

use super::registry;

/// Process-wide queue state.
pub struct JobsState {
    /// Wakes this process's workers (after a commit that enqueued).
    pub wake: tokio::sync::Notify,
    pub registry: registry::Registry,
    /// This process's worker id, kept in `locked_by`.
    pub worker_id: String,
}

impl Default for JobsState {
    fn default() -> Self {
        Self {
            wake: tokio::sync::Notify::new(),
            registry: registry::registry(),
            worker_id: format!("{}-{}", hostname(), &Uuid::now_v7().simple().to_string()[20..]),
        }
    }
}

impl JobsState {
    /// Call after committing a transaction that enqueued, so local workers start at once.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "mash".into()).chars().take(40).collect()
}
