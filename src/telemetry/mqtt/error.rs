//! Why a broker hook refused a device.

use sea_orm::DbErr;

use crate::http::AppError;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The broker is told no (403), with why.
    #[error("{0}")]
    Denied(&'static str),
    #[error("invalid acc: must be 1, 2, 3, 4, publish or subscribe")]
    BadAccess,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<HookError> for AppError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::Denied(why) => AppError::Forbidden(why.to_string()),
            HookError::BadAccess => AppError::invalid_field("acc", "must be 1, 2, 3, 4, publish or subscribe"),
            HookError::Db(e) => e.into(),
        }
    }
}
