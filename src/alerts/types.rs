//! Wire types of `/alerts` and of alert events: [`AlertOut`], [`Change`], [`AlertQuery`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    entity::{AlertStatus, Severity, alert},
    error::AlertError,
};

/// How an alert changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Acknowledged,
    Resolved,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Acknowledged => "acknowledged",
            Change::Resolved => "resolved",
        }
    }
}

/// An alert as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub device_id: Uuid,
    pub rule_id: Uuid,
    pub metric: String,
    /// `info`, `warning` or `critical`.
    #[schema(value_type = String)]
    pub severity: Severity,
    /// `active`, `acknowledged` or `resolved`.
    #[schema(value_type = String)]
    pub status: AlertStatus,
    pub message: String,
    /// The reading that (last) met the condition; for `stale`, the seconds since the last reading.
    pub value: f64,
    /// How many times the condition was met while this alert was open.
    pub count: i32,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<Uuid>,
}

impl From<&alert::Model> for AlertOut {
    fn from(a: &alert::Model) -> Self {
        Self {
            id: a.id,
            grower_id: a.grower_id,
            device_id: a.device_id,
            rule_id: a.rule_id,
            metric: a.metric.clone(),
            severity: a.severity,
            status: a.status,
            message: a.message.clone(),
            value: a.value,
            count: a.count,
            created_at: a.created_at,
            last_seen_at: a.last_seen_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            resolved_at: a.resolved_at,
            resolved_by: a.resolved_by,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this grower's alerts (default: every grower the caller belongs to).
    pub grower_id: Option<String>,
    /// `active`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    pub device_id: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

impl AlertQuery {
    /// `status`, when given.
    pub fn status(&self) -> Result<Option<AlertStatus>, AlertError> {
        given(self.status.as_deref(), AlertStatus::parse, "status", "must be active, acknowledged or resolved")
    }

    /// `severity`, when given.
    pub fn severity(&self) -> Result<Option<Severity>, AlertError> {
        given(self.severity.as_deref(), Severity::parse, "severity", "must be info, warning or critical")
    }
}

/// A query parameter parsed when present and not empty, or the error naming it.
fn given<T>(
    raw: Option<&str>,
    parse: fn(&str) -> Option<T>,
    field: &'static str,
    message: &'static str,
) -> Result<Option<T>, AlertError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse(s).map(Some).ok_or(AlertError::InvalidFilter { field, message }),
    }
}
