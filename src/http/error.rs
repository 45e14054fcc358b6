//! The one error type of the HTTP layer and the contract's error shape.
//!
//! Handlers return `AppError`. Its `IntoResponse` sets the status and attaches an
//! [`ErrorInfo`] extension; the `shape_errors` middleware (see `layers.rs`) turns *every*
//! response with a status >= 400 into the contract's JSON body, filling in the request path
//! and id. That covers axum's own rejections, 404/405 from routing, timeouts and panics too.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;

/// One problem with one input field, listed in `details`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path of the field (`items[3].metric`), or a parameter name.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Every way a request can fail. The status mapping below is exhaustive on purpose:
/// a new variant must say which status it is.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { message: String, details: Vec<FieldError> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// `Forbidden` that names the refused items, in `details`.
    #[error("{message}")]
    ForbiddenWith { message: String, details: Vec<FieldError> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// `Conflict` that names the items in conflict, in `details`.
    #[error("{message}")]
    ConflictWith { message: String, details: Vec<FieldError> },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// A dependency (database, Redis) is down or saturated. The message is safe to show.
    #[error("{0}")]
    Unavailable(String),
    /// `Unavailable` that names which dependencies failed, in `details`.
    #[error("{message}")]
    UnavailableWith { message: String, details: Vec<FieldError> },
    /// Anything unexpected. The cause is logged; the client only learns that it happened.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest { message: message.into(), details: Vec::new() }
    }

    /// A 400 that names one bad field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let detail = FieldError::new(field, message);
        Self::BadRequest { message: format!("invalid {}: {}", detail.field, detail.message), details: vec![detail] }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ForbiddenWith { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::ConflictWith { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::UnavailableWith { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn details_value(details: Vec<FieldError>) -> Option<Value> {
    (!details.is_empty()).then(|| serde_json::to_value(details).unwrap_or(Value::Null))
}

/// What the error-shaping middleware needs to write the body. Attached to error responses.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub message: String,
    pub details: Option<Value>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut retry_after = None;
        let (message, details) = match self {
            Self::BadRequest { message, details } => {
                tracing::debug!(%message, "bad request");
                (message, details_value(details))
            }
            Self::UnavailableWith { message, details }
            | Self::ForbiddenWith { message, details }
            | Self::ConflictWith { message, details } => (message, details_value(details)),
            Self::TooManyRequests { message, retry_after_secs } => {
                retry_after = Some(retry_after_secs.max(1));
                (message, None)
            }
            Self::Internal(err) => {
                // The cause stays in the log, tied to the request id by the span.
                tracing::error!(error = ?err, "internal error");
                ("internal server error".to_string(), None)
            }
            Self::Unavailable(message) => {
                tracing::warn!(%message, "dependency unavailable");
                (message, None)
            }
            Self::Unauthorized(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::PayloadTooLarge(m)
            | Self::UnsupportedMediaType(m)
            | Self::Unprocessable(m) => {
                tracing::debug!(status = status.as_u16(), message = %m, "request refused");
                (m, None)
            }
        };
        let mut res = status.into_response();
        if let Some(secs) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(ErrorInfo { message, details });
        res
    }
}

/// The contract's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[schema(example = 409)]
    pub status_code: u16,
    #[schema(example = "Conflict")]
    pub error: String,
    #[schema(example = "email already registered")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    pub details: Option<Value>,
    #[schema(example = "/api/v1/auth/register")]
    pub path: String,
    pub timestamp: String,
    pub request_id: String,
}

/// The message used when a response carries no `ErrorInfo` (axum's and tower's own refusals).
pub fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "no route matches this path",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this path",
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => "the request could not be completed in time",
        StatusCode::INTERNAL_SERVER_ERROR => "internal server error",
        s => s.canonical_reason().unwrap_or("error"),
    }
}

/// Maps a database error in one place: missing rows 404, unique violations 409,
/// foreign-key violations 409, a pool that cannot hand out a connection or a database
/// that is down 503. Never "not found" for an outage, never a panic.
impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        crate::db::error::classify(err)
    }
}
