//! Greenhouses: growers (the tenant) and their members, chambers, and devices with their
//! credentials, presence (`online`/`offline` from last contact) and desired/reported state.
//!
//! Every route checks the caller's standing in the grower first (`access`), and a device token
//! only ever reaches its own device (`devices::tokens`).

use utoipa_axum::router::OpenApiRouter;

pub mod access;
mod audit;
pub mod devices;
pub mod entity;
mod error;
pub mod growers;
mod presence;

/// `DeviceAuth` and token issuing, under the name other domains know them by.
pub use devices::tokens as device_auth;
pub use devices::{DeviceOut, NewDevice, new_device, tokens::DeviceAuth};
pub use entity::MemberRole;
pub use error::{AccessError, GreenhouseError};
pub use presence::{DeviceStatus, GreenhouseState};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(growers::router()).merge(devices::router())
}
