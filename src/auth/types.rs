//! Wire types of the `/auth/*` routes: what clients send (`XxxIn`) and get back (`XxxOut`).

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sessions::DeviceInfo;
use crate::users::UserOut;

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterIn {
    /// Surrounding whitespace is dropped before validation (emails are stored trimmed and
    /// lower-cased), so `" Ada@Example.com "` is the same account as `ada@example.com`.
    #[garde(email, length(max = 320))]
    #[serde(deserialize_with = "trimmed")]
    pub email: String,
    /// At least 8 characters, not a common password.
    #[garde(skip)]
    pub password: String,
    #[garde(length(chars, min = 1, max = 200), custom(crate::users::not_blank))]
    pub name: String,
    #[garde(length(max = 128))]
    pub device_id: Option<String>,
    #[garde(length(max = 128))]
    pub device_name: Option<String>,
}

fn trimmed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.trim().to_string())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginIn {
    #[garde(length(min = 1, max = 320))]
    pub email: String,
    #[garde(length(min = 1, max = 1024))]
    pub password: String,
    #[garde(length(max = 128))]
    pub device_id: Option<String>,
    #[garde(length(max = 128))]
    pub device_name: Option<String>,
}

/// Signed in: the user and their tokens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthOut {
    pub user: UserOut,
    #[serde(flatten)]
    pub tokens: TokenPair,
}

/// The second step is needed: present `mfaToken` and a code to `/auth/mfa/verify`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaRequiredOut {
    pub mfa_required: bool,
    pub mfa_token: String,
}

/// What a client receives after login, refresh or MFA verification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshIn {
    #[garde(length(min = 1, max = 256))]
    pub refresh_token: String,
}

/// One of the caller's sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionOut {
    pub id: Uuid,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The session of the token making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionsOut {
    pub data: Vec<SessionOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollOut {
    /// Base32 secret, for manual entry in an authenticator app.
    pub secret: String,
    /// `otpauth://` URL, for a QR code.
    pub otpauth_url: String,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct CodeIn {
    /// A 6-digit TOTP code (or, where accepted, a backup code).
    #[garde(length(min = 6, max = 32))]
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCodesOut {
    /// Ten single-use codes. Shown only now; store them safely.
    pub backup_codes: Vec<String>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyIn {
    #[garde(length(min = 1, max = 256))]
    pub mfa_token: String,
    /// A TOTP code or a backup code.
    #[garde(length(min = 6, max = 32))]
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedOut {
    pub user: UserOut,
    #[serde(flatten)]
    pub tokens: TokenPair,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct ForgotIn {
    #[garde(length(min = 1, max = 320))]
    pub email: String,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetIn {
    #[garde(length(min = 1, max = 256))]
    pub token: String,
    #[garde(skip)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct VerifyEmailIn {
    #[garde(length(min = 1, max = 256))]
    pub token: String,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeIn {
    /// The provider's ID token (a JWT).
    #[garde(length(min = 1, max = 16384))]
    pub id_token: String,
    #[garde(length(max = 128))]
    pub device_id: Option<String>,
    #[garde(length(max = 128))]
    pub device_name: Option<String>,
}

/// The login device named in a sign-in request.
macro_rules! device_of {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn device(&self) -> DeviceInfo {
                DeviceInfo { device_id: self.device_id.clone(), device_name: self.device_name.clone() }
            }
        }
    )*};
}

device_of!(RegisterIn, LoginIn, ExchangeIn);
