//! Why a request with a key cannot run, and the one conversion into the HTTP error.

use sea_orm::DbErr;

use crate::http::AppError;

/// Why a request with a key cannot run.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used before with another request: 422.
    #[error("this Idempotency-Key was already used with a different request; use a new key")]
    Reused,
    /// The first request with this key has not finished: 409.
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A stored row, or a response, that cannot be what we wrote: a bug, 500.
    #[error("{0}")]
    Broken(String),
}

impl From<IdempotencyError> for AppError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::Reused => AppError::Unprocessable(e.to_string()),
            IdempotencyError::InProgress => AppError::Conflict(e.to_string()),
            IdempotencyError::Db(e) => e.into(),
            IdempotencyError::Broken(why) => AppError::Internal(anyhow::anyhow!(why)),
        }
    }
}
