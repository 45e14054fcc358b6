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
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "Health, readiness and metrics"),
        (name = "auth", description = "Sign-up, sign-in, tokens, sessions and MFA"),
        (name = "users", description = "The caller's account and admin user management"),
        (name = "growers", description = "Growers (tenants), their members and chambers"),
        (name = "devices", description = "Device registry, tokens, live state, desired and reported state"),
        (name = "telemetry", description = "Sensor readings: ingestion and history"),
        (name = "mqtt", description = "HTTP auth/ACL hooks for the MQTT broker (shared-secret protected)"),
        (name = "shop", description = "Catalogue: categories and products (reading needs no token)"),
        (name = "orders", description = "Orders: stock taken at order time, never oversold; `Idempotency-Key`"),
        (name = "payments", description = "Payments through the configured provider, and provider webhooks"),
        (name = "alerts", description = "Alert rules over telemetry, alerts, push targets and grower alert webhooks"),
        (name = "realtime", description = "Path subscriptions over WebSocket and SSE: snapshot, live events, resume, presence"),
        (name = "admin", description = "Operator views: the job queue")
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the routes refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "device",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Authorization",
                    "`Device <deviceToken>`, the token shown once by `POST /devices` or `rotate-token`",
                ),
            )),
        );
    }
}

/// Every documented route: service endpoints at the root, domain routes under `/api/v1`.
fn documented() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::<AppState>::new()
        .merge(crate::auth::router())
        .merge(crate::auth::mfa::router())
        .merge(crate::auth::email::router())
        .merge(crate::auth::oidc::router())
        .merge(crate::users::router())
        .merge(crate::greenhouse::router())
        .merge(crate::telemetry::router())
        .merge(crate::shop::router())
        .merge(crate::alerts::router())
        .merge(crate::jobs::router())
        .merge(crate::realtime::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::health::router())
        .merge(crate::auth::well_known())
        .nest(API_PREFIX, api)
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
