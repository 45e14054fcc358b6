//! The middleware stack every request passes through, outermost first:
//! conventions (request id, trace span, metrics and access line, error shaping, security
//! headers) -> CORS -> compression -> panic catcher -> timeout -> body limit -> router.
//!
//! The conventions are one middleware rather than one each: axum boxes the rest of the stack
//! for every `from_fn` layer on every request, and under load that showed (`bench/`).

use std::{any::Any, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::{
        CompressionLayer, Predicate,
        predicate::{DefaultPredicate, SizeAbove},
    },
    cors::{AllowOrigin, CorsLayer},
    timeout::TimeoutLayer,
};
use tracing::Instrument;

use super::error::{AppError, ErrorBody, ErrorInfo, default_message};
use crate::{config::AllowedOrigins, metrics::HttpLabels, state::AppState};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps the application router in the whole convention stack.
pub fn apply(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let cfg = &state.config.http;
    router
        .layer(DefaultBodyLimit::max(cfg.body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, cfg.request_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(1024))),
        )
        .layer(tower::util::option_layer(cors(&cfg.allowed_origins)))
        .layer(middleware::from_fn_with_state(state.clone(), conventions))
}

/// Every request: its id (a sane client-supplied `X-Request-Id` echoed, or a new UUID v7) on
/// the request, the response and the `request` span every log line of it carries; its count
/// and duration by route template, and its access line; the contract's error body for every
/// status >= 400; and the security headers.
async fn conventions(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let supplied = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = supplied.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let id_value = HeaderValue::from_str(&id).expect("request id is visible ASCII");
    req.headers_mut().insert(X_REQUEST_ID, id_value.clone());
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = match *req.method() {
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS => {
            req.method().as_str().to_owned()
        }
        _ => "OTHER".to_owned(),
    };
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %path);

    let metrics = &state.metrics;
    metrics.http_in_flight.inc();
    let res = next.run(req).instrument(span.clone()).await;
    metrics.http_in_flight.dec();
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    span.in_scope(|| {
        let latency_us = elapsed.as_micros() as u64;
        if is_probe_route(&route) {
            tracing::debug!(status, latency_us, route = %route, "request finished");
        } else {
            tracing::info!(status, latency_us, route = %route, "request finished");
        }
    });
    let labels = HttpLabels { method, route, status };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());

    let is_docs = path == "/docs" || path.starts_with("/docs/");
    let mut res = if status >= 400 { shape_error(res, path, &id_value) } else { res };
    let h = res.headers_mut();
    h.insert(X_REQUEST_ID, id_value);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(if is_docs { CSP_DOCS } else { CSP_API }));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    if let Some(max_age) = state.config.http.hsts_max_age {
        let v = format!("max-age={max_age}; includeSubDomains");
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_str(&v).expect("ascii"));
    }
    res
}

/// Probes and scrapes arrive every few seconds forever; their access lines are debug-level so
/// they do not drown the log (and do not cost a formatted line per probe).
fn is_probe_route(route: &str) -> bool {
    route.starts_with("/health/") || route == "/metrics"
}

/// The contract's error body for a response with a status >= 400. The body it replaces may
/// have been compressed on the way out, so its encoding goes too.
fn shape_error(res: Response, path: String, request_id: &HeaderValue) -> Response {
    let status = res.status();
    let (mut parts, _) = res.into_parts();
    let info = parts.extensions.remove::<ErrorInfo>();
    let (message, details) = match info {
        Some(ErrorInfo { message, details }) => (message, details),
        None => (default_message(status).to_owned(), None),
    };
    let body = ErrorBody {
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        message,
        details,
        path,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        request_id: request_id.to_str().unwrap_or_default().to_owned(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(bytes))
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    AppError::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}

/// The docs UI needs its own scripts and styles; everything else is JSON and gets the
/// strictest policy.
const CSP_API: &str = "default-src 'none'; frame-ancestors 'none'";
const CSP_DOCS: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

/// CORS from `ALLOWED_ORIGINS`: a wildcard never goes with credentials; an explicit list does;
/// an empty list sends no CORS headers at all (same-origin only).
fn cors(origins: &AllowedOrigins) -> Option<CorsLayer> {
    if matches!(origins, AllowedOrigins::List(list) if list.is_empty()) {
        return None;
    }
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
            X_REQUEST_ID,
        ])
        .expose_headers([X_REQUEST_ID, header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600));
    Some(match origins {
        AllowedOrigins::Any => base.allow_origin(AllowOrigin::any()),
        AllowedOrigins::List(list) => {
            let values: Vec<HeaderValue> = list.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
            base.allow_origin(AllowOrigin::list(values)).allow_credentials(true)
        }
    })
}
