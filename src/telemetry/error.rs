//! Why a batch (or a history read) was refused, and the one place that says how each refusal
//! is answered over HTTP and counted in `telemetry_rejected_total`.

use axum::response::{IntoResponse, Response};
use sea_orm::DbErr;

use crate::{
    greenhouse::AccessError,
    http::{AppError, FieldError},
};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("expected `Content-Type: application/json`")]
    ContentType,
    #[error("a batch body may be at most {limit} bytes")]
    TooLarge { limit: usize },
    /// Bad input, naming each bad field (`items[3].ts`, `metric`, ...).
    #[error("{message}")]
    Invalid { message: String, details: Vec<FieldError> },
    /// A device sent a reading of another device (the first such item).
    #[error("items[{index}].deviceId: a device may only send its own readings; nothing was stored")]
    NotOwnReading { index: usize },
    /// A person sent readings of devices they may not write to (the first item of each).
    #[error("items[{}].deviceId: not a device you may write to; nothing was stored", .items[0])]
    NotWritable { items: Vec<usize> },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl TelemetryError {
    /// A 400 naming one bad field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let detail = FieldError::new(field, message);
        Self::Invalid { message: format!("invalid {}: {}", detail.field, detail.message), details: vec![detail] }
    }

    /// The 400 of one of the HTTP layer's parsers (`parse_json`, `parse_positive`,
    /// `decode_cursor`), which only ever answer 400s.
    pub fn bad_input(e: AppError) -> Self {
        match e {
            AppError::BadRequest { message, details } => Self::Invalid { message, details },
            other => Self::Invalid { message: other.to_string(), details: Vec::new() },
        }
    }
}

fn item(i: usize) -> String {
    format!("items[{i}].deviceId")
}

impl From<TelemetryError> for AppError {
    fn from(e: TelemetryError) -> Self {
        use TelemetryError as E;
        match e {
            E::ContentType => AppError::UnsupportedMediaType(e.to_string()),
            E::TooLarge { .. } => AppError::PayloadTooLarge(e.to_string()),
            E::Invalid { message, details } => AppError::BadRequest { message, details },
            E::NotOwnReading { index } => AppError::ForbiddenWith {
                message: e.to_string(),
                details: vec![FieldError::new(item(index), "is not the authenticated device")],
            },
            E::NotWritable { ref items } => AppError::ForbiddenWith {
                details: items.iter().map(|&i| FieldError::new(item(i), "is not a device you may write to")).collect(),
                message: e.to_string(),
            },
            E::Access(e) => e.into(),
            E::Db(e) => e.into(),
        }
    }
}

/// So it can be an extractor's rejection (`BatchBody`).
impl IntoResponse for TelemetryError {
    fn into_response(self) -> Response {
        AppError::from(self).into_response()
    }
}
