//! Wire types of `/alert-rules`: [`RuleIn`], [`RulePatch`], [`RuleOut`], [`RuleQuery`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::spec::RuleSpec;
use crate::alerts::entity::{Kind, Op, Severity, rule};

/// A new rule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleIn {
    pub grower_id: Uuid,
    /// One device; without it, every device of the grower.
    pub device_id: Option<Uuid>,
    /// A label for people (up to 120 characters).
    pub name: Option<String>,
    pub metric: String,
    pub kind: Kind,
    /// threshold and rate: `gt`/`lt` compare with `threshold`, `outside` with `low`..`high`.
    pub op: Option<Op>,
    /// threshold/rate: the limit (rate: per minute). anomaly: `k`, in standard deviations (default 3).
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// threshold/rate/anomaly: how long the condition must hold before the rule fires (default 0).
    /// stale: how long without a reading (required).
    pub for_seconds: Option<i32>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Defaults to true.
    pub enabled: Option<bool>,
    /// Resolve the open alert when the condition clears (default true).
    pub auto_resolve: Option<bool>,
    /// anomaly: weight of each new reading in the baseline, 0 < alpha <= 1 (default 0.1).
    pub alpha: Option<f64>,
    /// anomaly: readings before the detector judges (default 20, at least 2).
    pub warmup_samples: Option<i32>,
}

/// Changes to a rule; absent fields stay, `null` clears an optional one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulePatch {
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<Uuid>)]
    pub device_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub metric: Option<String>,
    pub kind: Option<Kind>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<Op>)]
    pub op: Option<Option<Op>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub threshold: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub low: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub high: Option<Option<f64>>,
    pub for_seconds: Option<i32>,
    pub severity: Option<String>,
    pub enabled: Option<bool>,
    pub auto_resolve: Option<bool>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<f64>)]
    pub alpha: Option<Option<f64>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<i32>)]
    pub warmup_samples: Option<Option<i32>>,
}

/// A rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub device_id: Option<Uuid>,
    pub name: Option<String>,
    pub metric: String,
    #[schema(value_type = String)]
    pub kind: Kind,
    #[schema(value_type = Option<String>)]
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub for_seconds: i32,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub enabled: bool,
    pub auto_resolve: bool,
    pub alpha: Option<f64>,
    pub warmup_samples: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&rule::Model> for RuleOut {
    fn from(r: &rule::Model) -> Self {
        Self {
            id: r.id,
            grower_id: r.grower_id,
            device_id: r.device_id,
            name: r.name.clone(),
            metric: r.metric.clone(),
            kind: r.kind,
            op: r.op,
            threshold: r.threshold,
            low: r.low,
            high: r.high,
            for_seconds: r.for_seconds,
            severity: r.severity,
            enabled: r.enabled,
            auto_resolve: r.auto_resolve,
            alpha: r.alpha,
            warmup_samples: r.warmup_samples,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A new rule's definition (its grower aside).
impl From<RuleIn> for RuleSpec {
    fn from(input: RuleIn) -> Self {
        Self {
            device_id: input.device_id,
            name: input.name,
            metric: input.metric,
            kind: input.kind,
            op: input.op,
            threshold: input.threshold,
            low: input.low,
            high: input.high,
            for_seconds: input.for_seconds.unwrap_or(0),
            severity: input.severity,
            enabled: input.enabled.unwrap_or(true),
            auto_resolve: input.auto_resolve.unwrap_or(true),
            alpha: input.alpha,
            warmup_samples: input.warmup_samples,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RuleQuery {
    /// Only this grower's rules (default: every grower the caller belongs to).
    pub grower_id: Option<String>,
    /// Only rules of this device (rules for all devices included).
    pub device_id: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}
