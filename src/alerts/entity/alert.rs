//! `alerts`: one per (rule, device) while open, with its [`AlertStatus`].

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use super::Severity;

/// Where an alert is in its life: `active` → `acknowledged` → `resolved`, or `active` →
/// `resolved` (the moves are [`AlertStatus::moves_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Open, nobody on it yet.
    #[sea_orm(string_value = "active")]
    Active,
    /// Open, someone is on it.
    #[sea_orm(string_value = "acknowledged")]
    Acknowledged,
    /// Closed: the next breach opens a new alert.
    #[sea_orm(string_value = "resolved")]
    Resolved,
}

impl AlertStatus {
    /// The stored (and wire) string.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Active => "active",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|v| v.as_str() == s)
    }

    /// The statuses an alert may move to `self` from: `active` to `acknowledged`, `active` or
    /// `acknowledged` to `resolved`; nothing goes back to `active`.
    pub fn moves_from(self) -> &'static [AlertStatus] {
        match self {
            AlertStatus::Active => &[],
            AlertStatus::Acknowledged => &[AlertStatus::Active],
            AlertStatus::Resolved => &[AlertStatus::Active, AlertStatus::Acknowledged],
        }
    }

    /// Whether the alert is still open (not resolved).
    pub fn is_open(self) -> bool {
        self != AlertStatus::Resolved
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub grower_id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Uuid,
    pub metric: String,
    pub severity: Severity,
    pub status: AlertStatus,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_moves_back_to_active_and_resolved_is_final() {
        assert!(AlertStatus::Active.moves_from().is_empty());
        for to in <AlertStatus as sea_orm::Iterable>::iter() {
            assert!(!to.moves_from().contains(&AlertStatus::Resolved), "{to:?}");
            assert!(!to.moves_from().contains(&to), "{to:?} is not a move");
            assert_eq!(AlertStatus::parse(to.as_str()), Some(to));
        }
    }
}
