//! The catalogue's routes, by resource.

mod categories;
mod products;

use categories::*;
use products::*;
use utoipa_axum::router::OpenApiRouter;

use crate::{routes, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_categories, create_category))
        .routes(routes!(get_category, patch_category, delete_category))
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, patch_product, delete_product))
}
