//! Identity tables other than `users`: login devices, sessions, refresh tokens, MFA state,
//! and single-use email tokens; and the closed sets of values their text columns hold.

use sea_orm::{DeriveActiveEnum, EnumIter, sea_query::StringLen};

/// Why a session ended, kept in `sessions.revoked_reason` (a CHECK keeps other values out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RevokeReason {
    #[sea_orm(string_value = "logout")]
    Logout,
    #[sea_orm(string_value = "deleted")]
    Deleted,
    #[sea_orm(string_value = "password_changed")]
    PasswordChanged,
    #[sea_orm(string_value = "password_reset")]
    PasswordReset,
    #[sea_orm(string_value = "disabled")]
    Disabled,
    #[sea_orm(string_value = "role_changed")]
    RoleChanged,
    #[sea_orm(string_value = "refresh_reuse")]
    RefreshReuse,
    #[sea_orm(string_value = "user_deleted")]
    UserDeleted,
}

/// What a single-use email token is for, kept in `one_time_tokens.purpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Purpose {
    #[sea_orm(string_value = "email_verify")]
    EmailVerify,
    #[sea_orm(string_value = "password_reset")]
    PasswordReset,
}

macro_rules! entity {
    ($module:ident, $table:literal, { $($field:ident : $ty:ty),* $(,)? }) => {
        pub mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub id: Uuid,
                $(pub $field: $ty,)*
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

entity!(user_device, "user_devices", {
    user_id: Uuid,
    device_id: String,
    device_name: Option<String>,
    device_type: Option<String>,
    last_active_at: DateTimeUtc,
    created_at: DateTimeUtc,
});

entity!(session, "sessions", {
    user_id: Uuid,
    user_device_id: Option<Uuid>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    created_at: DateTimeUtc,
    last_used_at: DateTimeUtc,
    expires_at: DateTimeUtc,
    revoked_at: Option<DateTimeUtc>,
    // Written only as a `RevokeReason` (see `sessions::revoke_where`); the model reads the text.
    revoked_reason: Option<String>,
});

entity!(refresh_token, "refresh_tokens", {
    session_id: Uuid,
    user_id: Uuid,
    token_hash: String,
    created_at: DateTimeUtc,
    expires_at: DateTimeUtc,
    used_at: Option<DateTimeUtc>,
});

entity!(backup_code, "mfa_backup_codes", {
    user_id: Uuid,
    code_hash: String,
    used_at: Option<DateTimeUtc>,
    created_at: DateTimeUtc,
});

entity!(mfa_challenge, "mfa_challenges", {
    user_id: Uuid,
    token_hash: String,
    context: Option<Json>,
    created_at: DateTimeUtc,
    expires_at: DateTimeUtc,
});

entity!(one_time_token, "one_time_tokens", {
    user_id: Uuid,
    purpose: super::Purpose,
    token_hash: String,
    created_at: DateTimeUtc,
    expires_at: DateTimeUtc,
    used_at: Option<DateTimeUtc>,
});
