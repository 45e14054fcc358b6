//! Why a greenhouse operation was refused: [`AccessError`] for the tenancy checks every route
//! (and the alerts and realtime domains) goes through, [`GreenhouseError`] for the rules of
//! growers, members, chambers and devices. Each turns into the HTTP answer in one place.

use sea_orm::DbErr;

use crate::http::AppError;

/// A refused tenancy check (`access.rs`).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The caller's role has no greenhouse access at all (customers, vendors).
    #[error("you are not allowed to do this")]
    NoGreenhouses,
    /// The thing does not exist, or is in a grower the caller is not in: the same answer,
    /// so ids cannot be probed. Names the thing (`device not found`), never the grower.
    #[error("{0}")]
    NotFound(String),
    /// A member who is not an owner asked to manage the grower.
    #[error("only the grower's owners may do this")]
    OwnersOnly,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<AccessError> for AppError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NoGreenhouses | AccessError::OwnersOnly => AppError::Forbidden(e.to_string()),
            AccessError::NotFound(m) => AppError::NotFound(m),
            AccessError::Db(e) => e.into(),
        }
    }
}

/// A broken rule of growers, members, chambers or devices.
#[derive(Debug, thiserror::Error)]
pub enum GreenhouseError {
    /// A bad input field (400 naming it).
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: &'static str },
    /// The device's reported document is over the size limit.
    #[error("reported state must be at most 16 KiB")]
    ReportTooLarge,
    /// A thing of this grower that is not there (`member`, `chamber`, `device`, ...).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("chamberId: no such chamber in this grower")]
    NoSuchChamber,
    #[error("userId: no such user")]
    NoSuchUser,
    #[error("userId: only GROWER (or ADMIN) users can be members of a grower")]
    NotAGrowerUser,
    #[error("the user already is a member of this grower")]
    AlreadyMember,
    #[error("a grower must keep at least one owner")]
    LastOwner,
    #[error("a chamber with this name already exists in this grower")]
    ChamberNameTaken,
    /// `ifVersion` named another version than the current one.
    #[error("desired state is at version {current}, not {expected}; read it again and retry")]
    VersionMismatch { current: i64, expected: i64 },
    /// Another writer changed the desired state between the read and the write.
    #[error("desired state changed meanwhile; read it again and retry")]
    ChangedMeanwhile,
    /// A device token whose device is gone.
    #[error("invalid device token")]
    UnknownDevice,
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<GreenhouseError> for AppError {
    fn from(e: GreenhouseError) -> Self {
        use GreenhouseError as E;
        match e {
            E::Invalid { field, message } => AppError::invalid_field(field, message),
            E::ReportTooLarge => AppError::bad_request(e.to_string()),
            E::NotFound(_) => AppError::NotFound(e.to_string()),
            E::NoSuchChamber | E::NoSuchUser | E::NotAGrowerUser | E::LastOwner => {
                AppError::Unprocessable(e.to_string())
            }
            E::AlreadyMember | E::ChamberNameTaken | E::VersionMismatch { .. } | E::ChangedMeanwhile => {
                AppError::Conflict(e.to_string())
            }
            E::UnknownDevice => AppError::Unauthorized(e.to_string()),
            E::Access(e) => e.into(),
            E::Db(e) => e.into(),
        }
    }
}
