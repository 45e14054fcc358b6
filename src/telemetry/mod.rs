//! Telemetry: ingestion over HTTP (`POST /telemetry/batch`) and MQTT, the time series
//! (`sensor_readings`), live state (`device_state`), history with SQL-side buckets, and the
//! maintenance task (partitions ahead, retention).
//!
//! - A batch is validated whole before anything is stored; one bad item refuses it, naming
//!   the item.
//! - A device writes only its own readings; a person only readings of devices in growers they
//!   may write to.
//! - Readings are unique on (device, metric, ts): a resent batch stores nothing twice.
//! - Accepted means committed, together with the batch's alert evaluation jobs.

use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

pub mod batch;
mod error;
pub mod extract;
mod handlers;
pub mod history;
pub mod ingest;
pub mod maintenance;
pub mod mqtt;
pub mod store;
pub mod types;

pub use error::TelemetryError;
pub use ingest::{ingest, rejected};
pub use mqtt::desired_changed;
pub use types::BatchOut;

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new()
        // The limit is the configured TELEMETRY_BODY_LIMIT_BYTES, enforced by `BatchBody`.
        .merge(OpenApiRouter::new().routes(routes!(post_batch)).layer(DefaultBodyLimit::disable()))
        .routes(routes!(get_telemetry))
        .merge(mqtt::router())
}

/// Process-wide telemetry state.
#[derive(Default)]
pub struct TelemetryState {
    pub partitions: store::Partitions,
    /// Publishes desired state to devices when the MQTT subscriber runs.
    pub mqtt: tokio::sync::OnceCell<mqtt::Publisher>,
}
