//! `alert_rules`: what a grower watches for, with its [`Kind`] and comparison [`Op`].

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use super::Severity;

/// What a rule watches for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[sea_orm(string_value = "threshold")]
    Threshold,
    #[sea_orm(string_value = "rate")]
    Rate,
    #[sea_orm(string_value = "stale")]
    Stale,
    #[sea_orm(string_value = "anomaly")]
    Anomaly,
}

impl Kind {
    /// The stored (and wire) string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Threshold => "threshold",
            Kind::Rate => "rate",
            Kind::Stale => "stale",
            Kind::Anomaly => "anomaly",
        }
    }
}

/// How a value is compared.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Op {
    #[sea_orm(string_value = "gt")]
    Gt,
    #[sea_orm(string_value = "lt")]
    Lt,
    #[sea_orm(string_value = "outside")]
    Outside,
}

impl Op {
    /// The stored (and wire) string.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => "gt",
            Op::Lt => "lt",
            Op::Outside => "outside",
        }
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub grower_id: Uuid,
    pub device_id: Option<Uuid>,
    pub name: Option<String>,
    pub metric: String,
    pub kind: Kind,
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub for_seconds: i32,
    pub severity: Severity,
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
