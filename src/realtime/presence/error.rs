//! Why presence could not be read or recorded.

use crate::http::AppError;

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// The shared store (Redis) could not be reached.
    #[error("presence store unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
}

impl From<PresenceError> for AppError {
    fn from(e: PresenceError) -> Self {
        match e {
            PresenceError::Db(e) => e.into(),
            PresenceError::Unavailable(e) => {
                tracing::warn!(error = %e, "presence: Redis unavailable");
                AppError::Unavailable("presence is unavailable right now".into())
            }
        }
    }
}
