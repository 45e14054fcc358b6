//! `growers`, `grower_members`, `chambers` and `devices`.

pub use member::MemberRole;

pub mod grower {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "growers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod member {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    // Stored as its wire spelling; migration `m20261206_000011_greenhouse_checks` refuses any
    // other value. (Doc comments here would change the OpenAPI description.)
    /// A member's role inside one grower.
    #[derive(
        Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, EnumIter, DeriveActiveEnum,
    )]
    #[serde(rename_all = "UPPERCASE")]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
    pub enum MemberRole {
        // Manages members, chambers and devices.
        #[sea_orm(string_value = "OWNER")]
        Owner,
        // Reads everything, writes telemetry and desired state.
        #[sea_orm(string_value = "MEMBER")]
        Member,
    }

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "grower_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub grower_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub role: MemberRole,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chamber {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "chambers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub grower_id: Uuid,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod device {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub grower_id: Uuid,
        pub chamber_id: Option<Uuid>,
        pub name: String,
        pub kind: Option<String>,
        pub metadata: Option<Json>,
        pub token_id: String,
        pub token_hash: String,
        pub token_rotated_at: DateTimeUtc,
        pub last_seen_at: Option<DateTimeUtc>,
        pub desired: Json,
        pub desired_version: i64,
        pub desired_updated_at: Option<DateTimeUtc>,
        pub reported_state: Option<Json>,
        pub reported_version: Option<i64>,
        pub reported_at: Option<DateTimeUtc>,
        pub deleted_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
