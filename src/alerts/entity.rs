//! Alert rules, their evaluation state, alerts, push tokens, delivery records and webhooks.

pub mod rule {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub grower_id: Uuid,
        pub device_id: Option<Uuid>,
        pub name: Option<String>,
        pub metric: String,
        pub kind: String,
        pub op: Option<String>,
        pub threshold: Option<f64>,
        pub low: Option<f64>,
        pub high: Option<f64>,
        pub for_seconds: i32,
        pub severity: String,
        pub enabled: bool,
        pub auto_resolve: bool,
        pub alpha: Option<f64>,
        pub warmup_samples: Option<i32>,
        pub created_by: Option<Uuid>,
        pub deleted_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The last reading evaluated of each (device, metric), shared by the rules that watch it.
pub mod series_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_series_states")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub device_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub metric: String,
        pub last_ts: Option<DateTimeUtc>,
        pub last_value: Option<f64>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A rule's own evaluation state per device: a `forSeconds` streak, an anomaly baseline.
pub mod rule_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_rule_states")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub rule_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub device_id: Uuid,
        pub breach_since: Option<DateTimeUtc>,
        pub mean: f64,
        pub variance: f64,
        pub samples: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert {
    use sea_orm::entity::prelude::*;

    pub const ACTIVE: &str = "active";
    pub const ACKNOWLEDGED: &str = "acknowledged";
    pub const RESOLVED: &str = "resolved";

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alerts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub grower_id: Uuid,
        pub device_id: Uuid,
        pub rule_id: Uuid,
        pub metric: String,
        pub severity: String,
        pub status: String,
        pub message: String,
        pub value: f64,
        pub count: i32,
        pub created_at: DateTimeUtc,
        pub last_seen_at: DateTimeUtc,
        pub acknowledged_at: Option<DateTimeUtc>,
        pub acknowledged_by: Option<Uuid>,
        pub resolved_at: Option<DateTimeUtc>,
        pub resolved_by: Option<Uuid>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod push_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "push_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub token: String,
        pub platform: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub alert_id: Option<Uuid>,
        pub channel: String,
        pub target: String,
        pub status: String,
        pub error: Option<String>,
        pub attempt: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "grower_webhooks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub grower_id: Uuid,
        pub url: String,
        pub secret_sealed: String,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
