//! Wire types of the `/users/*` routes, and the conversions from rows into them. A user is only
//! ever shown as a [`UserOut`], built field by field, so no hash, secret or token can reach a
//! response.

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    entity::{profile, user},
    views::ViewRow,
};
use crate::auth::Role;

/// A user as the API shows it. Built field by field from the row, so no hash, secret or token
/// can ever appear in it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserOut {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&user::Model> for UserOut {
    fn from(u: &user::Model) -> Self {
        let view = ViewRow {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            disabled_at: u.disabled_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
        };
        view.into()
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MePatch {
    #[garde(length(chars, min = 1, max = 200), inner(custom(not_blank)))]
    pub name: Option<String>,
}

/// A user's profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileOut {
    pub avatar_url: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub bio: Option<String>,
    pub preferences: Option<serde_json::Value>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<Option<profile::Model>> for ProfileOut {
    fn from(p: Option<profile::Model>) -> Self {
        match p {
            Some(p) => Self {
                avatar_url: p.avatar_url,
                phone: p.phone,
                address: p.address,
                bio: p.bio,
                preferences: p.preferences,
                updated_at: Some(p.updated_at),
            },
            None => {
                Self { avatar_url: None, phone: None, address: None, bio: None, preferences: None, updated_at: None }
            }
        }
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileIn {
    #[garde(length(max = 2048), inner(custom(valid_avatar_url)))]
    pub avatar_url: Option<String>,
    /// At most 32 characters (the column's size), 5 to 20 digits.
    #[garde(length(chars, max = 32), inner(custom(valid_phone)))]
    pub phone: Option<String>,
    #[garde(length(max = 500))]
    pub address: Option<String>,
    #[garde(length(max = 2000))]
    pub bio: Option<String>,
    #[garde(inner(custom(valid_preferences)))]
    pub preferences: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChangeIn {
    #[garde(length(min = 1, max = 1024))]
    pub current_password: String,
    #[garde(skip)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only users with this role.
    pub role: Option<String>,
    /// Case-insensitive substring of email or name.
    pub search: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[garde(skip)]
    pub role: Option<Role>,
    #[garde(length(chars, min = 1, max = 200), inner(custom(not_blank)))]
    pub name: Option<String>,
    /// `true` disables the account and ends its sessions at once; `false` enables it again.
    #[garde(skip)]
    pub disabled: Option<bool>,
}

/// Validation rule for names, which are stored trimmed: whitespace alone is no name.
pub fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() { Err(garde::Error::new("must not be blank")) } else { Ok(()) }
}

fn valid_avatar_url(url: &str, _: &()) -> garde::Result {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(garde::Error::new("must be an http(s) URL")),
    }
}

fn valid_phone(phone: &str, _: &()) -> garde::Result {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if allowed && (5..=20).contains(&digits) { Ok(()) } else { Err(garde::Error::new("must be a phone number")) }
}

fn valid_preferences(p: &serde_json::Value, _: &()) -> garde::Result {
    if !p.is_object() {
        return Err(garde::Error::new("must be a JSON object"));
    }
    if p.to_string().len() > 16 * 1024 {
        return Err(garde::Error::new("must be at most 16 KiB"));
    }
    Ok(())
}
