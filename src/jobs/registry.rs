//! Every job type this binary runs, listed once. Workers claim only types they know, so during
//! a rolling upgrade an older instance leaves newer job types to newer instances.

use std::{collections::HashMap, time::Duration};

use futures_util::future::BoxFuture;

use super::{BackgroundJob, Permanent, Run};
use crate::state::AppState;

type RunFn = for<'a> fn(serde_json::Value, &'a AppState, Run) -> BoxFuture<'a, anyhow::Result<()>>;

/// How to run one job type.
pub struct Kind {
    pub name: &'static str,
    pub timeout: Duration,
    run: RunFn,
}

impl Kind {
    pub fn run<'a>(
        &self,
        payload: serde_json::Value,
        state: &'a AppState,
        run: Run,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        (self.run)(payload, state, run)
    }
}

fn run_erased<J: BackgroundJob>(
    payload: serde_json::Value,
    state: &AppState,
    run: Run,
) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let job: J = serde_json::from_value(payload)
            .map_err(|e| Permanent(format!("arguments of {} do not parse: {e}", J::NAME)))?;
        job.run(state, run).await
    })
}

/// Job types by name.
#[derive(Default)]
pub struct Registry {
    kinds: HashMap<&'static str, Kind>,
}

impl Registry {
    pub fn register<J: BackgroundJob>(&mut self) {
        let kind = Kind { name: J::NAME, timeout: J::TIMEOUT, run: run_erased::<J> };
        assert!(self.kinds.insert(J::NAME, kind).is_none(), "job type {} registered twice", J::NAME);
    }

    pub fn get(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }

    /// The names, sorted (stable SQL text for claims).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

/// The registry of this binary.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register::<super::Noop>();
    r.register::<crate::mail::SendEmail>();
    r.register::<crate::alerts::evaluate::EvaluateReadings>();
    r.register::<crate::alerts::evaluate::CheckStale>();
    r.register::<crate::alerts::delivery::PublishAlertEvents>();
    r.register::<crate::alerts::delivery::SendPush>();
    r.register::<crate::alerts::delivery::DeliverWebhook>();
    r.register::<super::Upkeep>();
    r.register::<crate::telemetry::maintenance::TelemetryMaintenance>();
    r.register::<crate::idempotency::PruneIdempotencyKeys>();
    r
}
