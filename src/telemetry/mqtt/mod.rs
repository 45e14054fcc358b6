//! MQTT (when `MQTT_URL` is set): the subscriber that feeds device messages into the same
//! validation and storage path as HTTP, the desired-state publisher, and the HTTP hooks a
//! broker calls to check device identity (`/mqtt/auth`, `/mqtt/acl`, `/mqtt/superuser`).

use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

mod error;
mod handlers;
pub mod hooks;
mod publisher;
mod subscriber;
pub mod topics;
pub mod types;

pub use error::HookError;
pub use publisher::{Publisher, desired_changed};
pub use subscriber::spawn;
pub use topics::{desired_topic, telemetry_topic};

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new().routes(routes!(mqtt_auth)).routes(routes!(mqtt_acl)).routes(routes!(mqtt_superuser))
}
