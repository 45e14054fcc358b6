//! Service endpoints for orchestrators and operators: liveness, readiness, metrics.
//!
//! The rules: a live process always answers `/health/live`; `/health/ready` answers 200 only
//! when the database (and Redis, when configured) answer within two seconds, and names what
//! failed otherwise (`ready.rs`); `/metrics` needs the bearer token when `METRICS_TOKEN` is set.

use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

mod error;
mod handlers;
mod ready;
pub mod types;

pub use error::HealthError;

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready)).routes(routes!(metrics))
}
