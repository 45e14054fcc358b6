//! How serious an alert is: a rule's `severity`, copied onto each alert it opens, and the
//! `ALERT_PUSH_MIN_SEVERITY` / `ALERT_EMAIL_MIN_SEVERITY` settings (`crate::config`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Alert severities, lowest first (the order [`Ord`] compares in).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[sea_orm(string_value = "info")]
    Info,
    #[sea_orm(string_value = "warning")]
    Warning,
    #[sea_orm(string_value = "critical")]
    Critical,
}

impl Severity {
    /// The stored (and wire) string.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_round_trip() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        for s in <Severity as sea_orm::Iterable>::iter() {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.to_value(), s.as_str());
        }
        assert_eq!(Severity::parse("CRITICAL"), None);
    }
}
