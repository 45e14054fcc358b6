//! What can go wrong with an account, as the users domain sees it, and the one place that says
//! which status and message each failure is on the wire.

use sea_orm::DbErr;

use crate::{auth::PasswordError, http::AppError};

/// A failed account read or change.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A valid token whose account was deleted since it was issued.
    #[error("account no longer exists")]
    AccountGone,
    /// A password change or reset for an account deleted or disabled meanwhile.
    #[error("account no longer exists or is disabled")]
    GoneOrDisabled,
    #[error("user not found")]
    NotFound,
    #[error("admins cannot disable or demote themselves")]
    SelfDemotion,
    #[error("admins cannot delete themselves")]
    SelfDeletion,
    #[error("invalid currentPassword: is not correct")]
    WrongPassword,
    #[error("invalid role: must be ADMIN, GROWER, CUSTOMER or VENDOR")]
    UnknownRole,
    #[error("invalid search: must be at most 100 characters")]
    SearchTooLong,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<UserError> for AppError {
    fn from(e: UserError) -> Self {
        use UserError::*;
        let message = e.to_string();
        match e {
            AccountGone | GoneOrDisabled => AppError::Unauthorized(message),
            NotFound => AppError::NotFound(message),
            SelfDemotion | SelfDeletion => AppError::Unprocessable(message),
            WrongPassword => AppError::invalid_field("currentPassword", "is not correct"),
            UnknownRole => AppError::invalid_field("role", "must be ADMIN, GROWER, CUSTOMER or VENDOR"),
            SearchTooLong => AppError::invalid_field("search", "must be at most 100 characters"),
            Password(e) => crate::auth::AuthError::Password(e).into(),
            Db(e) => e.into(),
        }
    }
}
