//! Merges the domain routers, documents them, and wraps them in the convention stack.

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use super::{AppError, layers};
use crate::state::AppState;

/// Prefix of every API route (service endpoints live at the root).
pub const API_PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mash API",
        description = "Greenhouse platform backend: telemetry, devices, shop, alerts and realtime.\n\n\
                       Errors always use the `ErrorBody` shape. Lists answer `{data, meta}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(super::error::ErrorBody, super::error::FieldError, super::pagination::PageMeta)),
    tags((name = "service", description = "Health, readiness and metrics"))
)]
struct ApiDoc;

/// Every documented route: service endpoints at the root, domain routes under `/api/v1`.
fn documented() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::<AppState>::new();
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(crate::health::router()).nest(API_PREFIX, api)
}

/// The OpenAPI document, for `mash openapi` and `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().split_for_parts().1
}

/// The whole application router, conventions applied. `extra` is merged under the same stack
/// (tests use it to mount probe routes; production passes an empty router).
pub fn build(state: &AppState, extra: Router<AppState>) -> Router {
    let (routes, api) = documented().split_for_parts();
    let router = routes
        .merge(extra)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(|| async { AppError::NotFound("no route matches this path".into()) });
    layers::apply(router, state).with_state(state.clone())
}
