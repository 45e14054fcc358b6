//! `/devices`: the registry (provisioning with a one-time token, rotation, presence), live
//! state, and desired/reported state, from both sides: people (`Bearer`) and the device
//! itself (`Device`). Every person's route goes through the caller's tenancy (`access`); a
//! device only ever reaches its own record.

use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

pub mod desired;
mod handlers;
pub mod live;
pub mod registry;
pub mod reported;
pub mod tokens;
pub mod types;

pub use live::in_sync;
pub use registry::{NewDevice, live_growers, new_device};
pub use types::{DeviceOut, LatestValue};

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new()
        .routes(routes!(create_device, list_devices))
        .routes(routes!(get_own_device))
        .routes(routes!(get_own_desired))
        .routes(routes!(post_reported))
        .routes(routes!(get_device, patch_device, delete_device))
        .routes(routes!(rotate_token))
        .routes(routes!(get_state))
        .routes(routes!(put_desired))
}
