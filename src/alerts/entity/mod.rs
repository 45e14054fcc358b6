//! Alert rules, their evaluation state, alerts, push tokens, delivery records and webhooks.
//! Every closed set stored as text (a rule's kind, op and severity, an alert's status, a
//! delivery's channel and status, a token's platform) is an enum here, and a CHECK in the
//! database (migration `m20261206_000010_alerts_jobs_checks`).

mod severity;

pub mod alert;
pub mod delivery;
pub mod push_token;
pub mod rule;

pub use alert::AlertStatus;
pub use delivery::{Channel, DeliveryStatus};
pub use push_token::Platform;
pub use rule::{Kind, Op};
pub use severity::Severity;

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

/// A grower's alert webhook (one per grower), its signing secret sealed.
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
