//! Users: the account's own view (`/users/me`, profile, password) and admin management.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub mod entity;
mod handlers;

pub use handlers::router;

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

impl From<&entity::user::Model> for UserOut {
    fn from(u: &entity::user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: Role::parse(&u.role).unwrap_or(Role::Customer),
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Validation rule for names, which are stored trimmed: whitespace alone is no name.
pub fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() { Err(garde::Error::new("must not be blank")) } else { Ok(()) }
}

/// Emails are compared and stored lower-cased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Loads a live (not deleted) user by id.
pub async fn find_live<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<entity::user::Model>, sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::user::Entity::find_by_id(id).filter(entity::user::Column::DeletedAt.is_null()).one(db).await
}
