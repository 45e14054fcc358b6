//! Identity tables other than `users`: login devices, sessions, refresh tokens, MFA state,
//! and single-use email tokens.

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
    purpose: String,
    token_hash: String,
    created_at: DateTimeUtc,
    expires_at: DateTimeUtc,
    used_at: Option<DateTimeUtc>,
});
