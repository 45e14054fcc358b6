//! `users` and `user_profiles`. A user's `role` is a [`Role`](crate::auth::Role), stored as its
//! name.

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub password_hash: Option<String>,
        pub name: String,
        pub role: crate::auth::Role,
        pub email_verified: bool,
        pub external_issuer: Option<String>,
        pub external_uid: Option<String>,
        pub mfa_enabled: bool,
        pub totp_secret_enc: Option<String>,
        pub totp_pending_enc: Option<String>,
        pub totp_last_step: Option<i64>,
        pub password_changed_at: Option<DateTimeUtc>,
        pub disabled_at: Option<DateTimeUtc>,
        pub deleted_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod profile {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_profiles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub avatar_url: Option<String>,
        pub phone: Option<String>,
        pub address: Option<String>,
        pub bio: Option<String>,
        pub preferences: Option<Json>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
