//! `notification_deliveries`: one row per delivery attempt, by [`Channel`], with its
//! [`DeliveryStatus`].

use sea_orm::entity::prelude::*;

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Channel {
    /// An event on `/alerts/{growerId}`.
    #[sea_orm(string_value = "realtime")]
    Realtime,
    /// FCM.
    #[sea_orm(string_value = "push")]
    Push,
    #[sea_orm(string_value = "email")]
    Email,
    /// The grower's signed webhook.
    #[sea_orm(string_value = "webhook")]
    Webhook,
}

impl Channel {
    /// The stored string (and the `channel` label of the `notifications` metric).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Realtime => "realtime",
            Channel::Push => "push",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Mail without `SMTP_URL`: written to the log instead.
    #[sea_orm(string_value = "logged")]
    Logged,
    #[sea_orm(string_value = "failed")]
    Failed,
    /// FCM says the push token will never work again (it is deleted).
    #[sea_orm(string_value = "unregistered")]
    Unregistered,
    /// The channel is not configured (a push without FCM).
    #[sea_orm(string_value = "skipped")]
    Skipped,
}

impl DeliveryStatus {
    /// The stored string (and the `status` label of the `notifications` metric).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Logged => "logged",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unregistered => "unregistered",
            DeliveryStatus::Skipped => "skipped",
        }
    }
}

/// A channel compares equal to its stored string.
impl PartialEq<&str> for Channel {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A status compares equal to its stored string.
impl PartialEq<&str> for DeliveryStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub alert_id: Option<Uuid>,
    pub channel: Channel,
    pub target: String,
    pub status: DeliveryStatus,
    pub error: Option<String>,
    pub attempt: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
