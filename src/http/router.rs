//! Merges the domain routers, documents them, and wraps them in the convention stack.

use axum::{Router, extract::State};
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

thread_local! {
    /// Set while [`openapi`] builds the document: only then does [`routes!`](crate::routes)
    /// build each operation's documentation.
    ///
    /// A mode flag of one synchronous call, not shared state, and the one `static` kept here on
    /// purpose: it is set and reset by [`openapi`] around a call that builds routers on this
    /// thread and never yields, so no request and no other thread ever sees it set. The routers it
    /// steers are every domain's parameterless `router()` (expanded from `routes!` in each
    /// domain), which run before any `AppState` exists (`mash openapi` has none), so there is no
    /// state to carry it; passing it down would change every domain's `router()` signature.
    static DOCUMENTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the routers being built are for the OpenAPI document (see [`routes!`](crate::routes)).
pub fn documenting() -> bool {
    DOCUMENTING.get()
}

/// `utoipa_axum::routes!` for routers that are built twice: to serve, with each handler on its
/// path and methods (read from its `#[utoipa::path]`) and an empty operation, and, while
/// [`openapi`] runs, in full (operations, parameters, schemas). Building the documentation of
/// every route takes megabytes of heap and touches most of the code `#[utoipa::path]`
/// generates; a server that is never asked for `/openapi.json` now never pays for it.
#[macro_export]
macro_rules! routes {
    ($( $($segment:ident)::+ ),+ $(,)?) => {
        if $crate::http::router::documenting() {
            ::utoipa_axum::routes!($( $($segment)::+ ),+)
        } else {
            let mut paths = ::utoipa::openapi::path::Paths::new();
            let mut method_router = ::axum::routing::MethodRouter::new();
            $(
                let path: String = ::utoipa_axum::routes!(@path [path()] of $($segment)::+);
                let methods: Vec<::utoipa::openapi::path::HttpMethod> =
                    ::utoipa_axum::routes!(@path [methods()] of $($segment)::+);
                method_router = methods.iter().fold(method_router, |router, method| {
                    router.on(::utoipa_axum::PathItemExt::to_method_filter(method), $($segment)::+)
                });
                paths.add_path_operation(&path, methods, ::utoipa::openapi::path::Operation::new());
            )+
            (Vec::new(), paths, method_router)
        }
    };
}

/// Every documented route: service endpoints at the root, domain routes under `/api/v1`.
fn documented() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::<AppState>::new()
        .merge(crate::auth::router())
        .merge(crate::users::router())
        .merge(crate::greenhouse::router())
        .merge(crate::telemetry::router())
        .merge(crate::shop::router())
        .merge(crate::alerts::router())
        .merge(crate::jobs::router())
        .merge(crate::realtime::router());
    let root = if documenting() { OpenApiRouter::with_openapi(ApiDoc::openapi()) } else { OpenApiRouter::new() };
    root.merge(crate::health::router()).merge(crate::auth::well_known()).nest(API_PREFIX, api)
}

/// The OpenAPI document, for `mash openapi` and `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DOCUMENTING.set(false);
        }
    }
    DOCUMENTING.set(true);
    let _reset = Reset;
    documented().split_for_parts().1
}

/// `/openapi.json`: the document, built and serialized at the first request and kept, as JSON,
/// in the application state (`mash openapi` builds it on demand instead, without a state).
async fn openapi_json(State(state): State<AppState>) -> Result<impl axum::response::IntoResponse, AppError> {
    let spec = state
        .openapi_json
        .get_or_try_init(|| async {
            let json = tokio::task::spawn_blocking(|| serde_json::to_vec(&openapi()))
                .await
                .map_err(|e| AppError::Internal(anyhow::anyhow!("building the OpenAPI document: {e}")))?
                .map_err(|e| AppError::Internal(anyhow::anyhow!("serializing the OpenAPI document: {e}")))?;
            Ok::<_, AppError>(axum::body::Bytes::from(json))
        })
        .await?
        .clone();
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], spec))
}

/// The whole application router, conventions applied. `extra` is merged under the same stack
/// (tests use it to mount probe routes; production passes an empty router).
pub fn build(state: &AppState, extra: Router<AppState>) -> Router {
    let routes: Router<AppState> = documented().into();
    let router = routes
        .merge(extra)
        .route("/openapi.json", axum::routing::get(openapi_json))
        .merge(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::new(["/openapi.json"])))
        .fallback(|| async { AppError::NotFound("no route matches this path".into()) });
    layers::apply(router, state).with_state(state.clone())
}
