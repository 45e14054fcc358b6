//! What the service endpoints refuse, and the one place that says how.

use crate::http::{AppError, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A dependency did not answer; `failed` names each one and why.
    #[error("not ready: {} unavailable", failed.iter().map(|f| f.field.as_str()).collect::<Vec<_>>().join(" and "))]
    NotReady { failed: Vec<FieldError> },
    #[error("a valid metrics token is required")]
    MetricsToken,
}

impl From<HealthError> for AppError {
    fn from(e: HealthError) -> Self {
        let message = e.to_string();
        match e {
            HealthError::NotReady { failed } => AppError::UnavailableWith { message, details: failed },
            HealthError::MetricsToken => AppError::Unauthorized(message),
        }
    }
}
