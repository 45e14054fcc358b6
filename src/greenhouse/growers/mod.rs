//! `/growers`: the tenants, their members and their chambers.
//!
//! - Only ADMIN creates growers; owners (and ADMIN) rename them, manage members and chambers.
//! - Members are GROWER (or ADMIN) users; a grower always keeps at least one owner, except
//!   when an ADMIN changes it (admins reach every grower anyway).
//! - Chamber names are unique within a grower; deleting a chamber keeps its devices.

use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

pub mod chambers;
mod handlers;
pub mod members;
pub mod tenant;
pub mod types;

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new()
        .routes(routes!(create_grower, list_growers))
        .routes(routes!(get_grower, patch_grower))
        .routes(routes!(add_member, list_members))
        .routes(routes!(patch_member, remove_member))
        .routes(routes!(create_chamber, list_chambers))
        .routes(routes!(patch_chamber, delete_chamber))
}
