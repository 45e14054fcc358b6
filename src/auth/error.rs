//! What can go wrong in identity, as the domain sees it, and the one place that says which
//! status and message each failure is on the wire.

use sea_orm::DbErr;

use crate::{
    http::{AppError, FieldError},
    users::UserError,
};

/// A failed sign-up, sign-in, token, session, MFA, email-link or external-identity step.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("email already registered")]
    EmailTaken,
    /// Wrong email or password: one answer whether or not the email exists.
    #[error("invalid email or password")]
    BadCredentials,
    #[error("this account is disabled")]
    AccountDisabled,
    /// Too many failed logins for the account.
    #[error("too many failed logins for this account; try again later")]
    AccountLocked { retry_after_secs: u64 },
    /// Too many sign-in requests from one client address.
    #[error("too many requests from this address; slow down")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Password(#[from] PasswordError),

    #[error("missing bearer token")]
    MissingBearer,
    #[error("access token expired")]
    AccessTokenExpired,
    #[error("invalid access token")]
    InvalidAccessToken,
    #[error("session has been revoked")]
    SessionRevoked,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("session not found")]
    SessionNotFound,

    /// Enrolling again while MFA is on.
    #[error("MFA is already enabled; disable it first")]
    MfaEnabledDisableFirst,
    #[error("MFA is already enabled")]
    MfaAlreadyEnabled,
    #[error("start with /auth/mfa/totp/enroll")]
    MfaNotEnrolled,
    #[error("MFA is not enabled")]
    MfaNotEnabled,
    /// Activation needs the code the authenticator shows now.
    #[error("invalid code: is not the current code")]
    NotCurrentCode,
    /// Neither a current TOTP code nor an unused backup code.
    #[error("invalid code: is not a valid code")]
    InvalidCode,
    #[error("invalid or expired MFA token")]
    InvalidMfaToken,
    /// A wrong code at the second login step (counts towards lockout).
    #[error("invalid code")]
    WrongMfaCode,

    /// An email-link token (verification, password reset) that cannot be used.
    #[error("invalid token: is invalid, expired or already used")]
    InvalidEmailToken,
    #[error("email address already verified")]
    EmailAlreadyVerified,

    #[error("sign-in with an external identity provider is not configured")]
    OidcNotConfigured,
    #[error("invalid ID token")]
    InvalidIdToken,
    #[error("ID token expired")]
    IdTokenExpired,
    #[error("ID token signed by an unknown key")]
    IdTokenUnknownKey,
    #[error("the identity provider's keys cannot be fetched")]
    ProviderKeysUnreachable,
    #[error("the identity provider's keys cannot be read")]
    ProviderKeysUnreadable,
    /// The provider's email belongs to an account, and the provider does not vouch for it.
    #[error("an account with this email already exists; sign in with its password first")]
    EmailNotVouched,
    #[error("this account is already linked to another external identity")]
    AlreadyLinked,

    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A password that breaks the policy, or hashing that could not run.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// `field` names the request field (`password`, `newPassword`) or the variable (seeding).
    #[error("{field} {problem}")]
    Policy { field: String, problem: String },
    #[error("password hashing failed: {0}")]
    Hashing(anyhow::Error),
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        use AuthError::*;
        let message = e.to_string();
        match e {
            EmailTaken
            | MfaEnabledDisableFirst
            | MfaAlreadyEnabled
            | MfaNotEnrolled
            | MfaNotEnabled
            | EmailAlreadyVerified
            | EmailNotVouched
            | AlreadyLinked => AppError::Conflict(message),
            BadCredentials | AccountDisabled | MissingBearer | AccessTokenExpired | InvalidAccessToken
            | SessionRevoked | InvalidRefreshToken | InvalidMfaToken | WrongMfaCode | InvalidIdToken
            | IdTokenExpired | IdTokenUnknownKey => AppError::Unauthorized(message),
            AccountLocked { retry_after_secs } | RateLimited { retry_after_secs } => {
                AppError::TooManyRequests { message, retry_after_secs }
            }
            SessionNotFound => AppError::NotFound(message),
            NotCurrentCode => AppError::invalid_field("code", "is not the current code"),
            InvalidCode => AppError::invalid_field("code", "is not a valid code"),
            InvalidEmailToken => AppError::invalid_field("token", "is invalid, expired or already used"),
            OidcNotConfigured => AppError::Unprocessable(message),
            ProviderKeysUnreachable | ProviderKeysUnreadable => AppError::Unavailable(message),
            Password(PasswordError::Policy { field, problem }) => {
                AppError::BadRequest { message, details: vec![FieldError::new(field, problem)] }
            }
            Password(PasswordError::Hashing(cause)) | Internal(cause) => AppError::Internal(cause),
            User(e) => e.into(),
            Db(e) => e.into(),
        }
    }
}
