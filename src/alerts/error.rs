//! The alert domain's errors, one enum per part, each with its one conversion into
//! [`AppError`] (the status and message a client sees).

use sea_orm::DbErr;

use crate::http::{AppError, FieldError};

/// `/alerts`: reading and moving alerts.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert not found")]
    NotFound,
    /// A move the alert's status no longer allows (anything but acknowledging twice).
    #[error("the alert is already resolved")]
    AlreadyResolved,
    /// A list filter that is not one of its values.
    #[error("invalid {field}: {message}")]
    InvalidFilter { field: &'static str, message: &'static str },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<AlertError> for AppError {
    fn from(e: AlertError) -> Self {
        match e {
            AlertError::NotFound => AppError::NotFound(e.to_string()),
            AlertError::AlreadyResolved => AppError::Conflict(e.to_string()),
            AlertError::InvalidFilter { field, message } => AppError::invalid_field(field, message),
            AlertError::Db(e) => e.into(),
        }
    }
}

/// `/alert-rules`: defining rules.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("alert rule not found")]
    NotFound,
    /// Every problem with the rule as a whole, in the order they were found.
    #[error("invalid rule")]
    Invalid(Vec<FieldError>),
    #[error("invalid deviceId: is not a device of this grower")]
    DeviceNotInGrower,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<RuleError> for AppError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::NotFound => AppError::NotFound(e.to_string()),
            RuleError::Invalid(details) => {
                let message = details.first().map_or_else(
                    || "invalid rule".to_string(),
                    |first| format!("invalid {}: {}", first.field, first.message),
                );
                AppError::BadRequest { message, details }
            }
            RuleError::DeviceNotInGrower => AppError::invalid_field("deviceId", "is not a device of this grower"),
            RuleError::Db(e) => e.into(),
        }
    }
}

/// `/growers/{id}/alert-webhook`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("this grower has no alert webhook")]
    NotFound,
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// Sealing the signing secret failed (the error as the sealing code reports it).
    #[error("could not seal the webhook secret")]
    Seal(#[source] anyhow::Error),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<WebhookError> for AppError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::NotFound => AppError::NotFound(e.to_string()),
            WebhookError::InvalidUrl(message) => AppError::invalid_field("url", message),
            WebhookError::Seal(e) => AppError::Internal(e),
            WebhookError::Db(e) => e.into(),
        }
    }
}

/// `/push-tokens`.
#[derive(Debug, thiserror::Error)]
pub enum PushTokenError {
    #[error("push token not found")]
    NotFound,
    #[error("invalid token: must be 1 to 4096 printable characters")]
    InvalidToken,
    /// The row written a moment ago in the same transaction is not there.
    #[error("push token vanished")]
    Vanished,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<PushTokenError> for AppError {
    fn from(e: PushTokenError) -> Self {
        match e {
            PushTokenError::NotFound => AppError::NotFound(e.to_string()),
            PushTokenError::InvalidToken => AppError::invalid_field("token", "must be 1 to 4096 printable characters"),
            PushTokenError::Vanished => AppError::Internal(anyhow::anyhow!(e)),
            PushTokenError::Db(e) => e.into(),
        }
    }
}
