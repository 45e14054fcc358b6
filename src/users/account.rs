//! What an account is: live until soft-deleted, found by its trimmed, lower-cased email, and
//! created with a name trimmed to 200 characters. The one place that says what "live" means.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Select,
};
use uuid::Uuid;

use super::{UserError, UserOut, entity::user, types::MePatch};
use crate::{
    auth::{AuthUser, Role},
    state::AppState,
};

/// Emails are compared and stored lower-cased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Live (not deleted) users, for [`find_live`] and the view reads.
pub(super) fn live() -> Select<user::Entity> {
    user::Entity::find().filter(user::Column::DeletedAt.is_null())
}

/// Loads a live (not deleted) user by id.
pub async fn find_live<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<user::Model>, DbErr> {
    live().filter(user::Column::Id.eq(id)).one(db).await
}

/// The signed-in caller's row; [`UserError::AccountGone`] when the account was deleted since the
/// token was issued.
pub async fn load_signed_in<C: ConnectionTrait>(db: &C, me: &AuthUser) -> Result<user::Model, UserError> {
    find_live(db, me.user_id).await?.ok_or(UserError::AccountGone)
}

/// Changes the caller's own name (the only field of their account they change themselves).
pub async fn update_me(state: &AppState, me: &AuthUser, input: MePatch) -> Result<UserOut, UserError> {
    let u = load_signed_in(&state.db, me).await?;
    let mut active: user::ActiveModel = u.into();
    if let Some(name) = input.name {
        active.name = Set(name.trim().to_string());
    }
    active.updated_at = Set(Utc::now());
    Ok(UserOut::from(&active.update(&state.db).await?))
}

/// A new account row (password or external identity).
pub struct NewUser<'a> {
    pub email: String,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub external: Option<(&'a str, &'a str)>,
}

impl NewUser<'_> {
    pub fn into_active(self, id: Uuid) -> user::ActiveModel {
        let now = Utc::now();
        user::ActiveModel {
            id: Set(id),
            email: Set(self.email),
            password_changed_at: Set(self.password_hash.as_ref().map(|_| now)),
            password_hash: Set(self.password_hash),
            name: Set(self.name.trim().chars().take(200).collect()),
            role: Set(self.role),
            email_verified: Set(self.email_verified),
            external_issuer: Set(self.external.map(|(iss, _)| iss.to_string())),
            external_uid: Set(self.external.map(|(_, sub)| sub.to_string())),
            mfa_enabled: Set(false),
            totp_secret_enc: Set(None),
            totp_pending_enc: Set(None),
            totp_last_step: Set(None),
            disabled_at: Set(None),
            deleted_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }
}
