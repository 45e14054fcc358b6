//! `/push-tokens`: the caller's push targets (FCM registration tokens). A token belongs to one
//! user: registering a token another account had (a shared phone, a new sign-in) moves it.

use utoipa_axum::router::OpenApiRouter;

mod handlers;
pub mod tokens;
mod types;

pub use types::{PushTokenIn, PushTokenOut};

use crate::{routes, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new().routes(routes!(register, list)).routes(routes!(unregister))
}
