//! A rule as a client defines it ([`RuleSpec`]), checked as a whole before it is stored: every
//! problem is named in one answer, and a device must be one of the rule's grower.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{
    alerts::{
        entity::{Kind, Op, Severity, rule},
        error::RuleError,
    },
    greenhouse::access,
    http::FieldError,
    ids::{DeviceId, GrowerId, UserId},
};

/// What a client defines of a rule: everything but its id, grower and timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// One device; `None`, every device of the grower.
    pub device_id: Option<Uuid>,
    pub name: Option<String>,
    pub metric: String,
    pub kind: Kind,
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub for_seconds: i32,
    /// As the client wrote it: [`RuleSpec::check`] says whether it is a [`Severity`].
    pub severity: String,
    pub enabled: bool,
    pub auto_resolve: bool,
    pub alpha: Option<f64>,
    pub warmup_samples: Option<i32>,
}

/// What a rule keeps whatever its definition: its id, grower, author and timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub id: Uuid,
    pub grower_id: GrowerId,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Identity {
    /// A new rule's, created now.
    pub fn new(grower_id: GrowerId, by: UserId, now: DateTime<Utc>) -> Self {
        Self { id: Uuid::now_v7(), grower_id, created_by: Some(by.into()), created_at: now, updated_at: now }
    }

    /// A stored rule's, changed now.
    pub fn of(r: &rule::Model, now: DateTime<Utc>) -> Self {
        Self {
            id: r.id,
            grower_id: r.grower_id.into(),
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: now,
        }
    }
}

impl RuleSpec {
    /// The definition of a stored rule (what a change starts from).
    pub fn of(r: &rule::Model) -> Self {
        Self {
            device_id: r.device_id,
            name: r.name.clone(),
            metric: r.metric.clone(),
            kind: r.kind,
            op: r.op,
            threshold: r.threshold,
            low: r.low,
            high: r.high,
            for_seconds: r.for_seconds,
            severity: r.severity.as_str().to_string(),
            enabled: r.enabled,
            auto_resolve: r.auto_resolve,
            alpha: r.alpha,
            warmup_samples: r.warmup_samples,
        }
    }

    /// The rule this definition makes (its name trimmed), once [`RuleSpec::check`] gave its
    /// `severity`.
    pub fn into_rule(self, severity: Severity, identity: Identity) -> rule::Model {
        rule::Model {
            id: identity.id,
            grower_id: identity.grower_id.into(),
            device_id: self.device_id,
            name: self.name.map(|n| n.trim().to_string()),
            metric: self.metric,
            kind: self.kind,
            op: self.op,
            threshold: self.threshold,
            low: self.low,
            high: self.high,
            for_seconds: self.for_seconds,
            severity,
            enabled: self.enabled,
            auto_resolve: self.auto_resolve,
            alpha: self.alpha,
            warmup_samples: self.warmup_samples,
            created_by: identity.created_by,
            deleted_at: None,
            created_at: identity.created_at,
            updated_at: identity.updated_at,
        }
    }

    /// Checks the definition as a whole: its severity, or every problem, each named.
    pub fn check(&self) -> Result<Severity, RuleError> {
        let mut bad = Vec::new();
        let mut err = |f: &str, m: &str| bad.push(FieldError::new(f, m));
        if let Some(name) = self.name.as_deref().map(str::trim)
            && (name.is_empty() || name.chars().count() > 120)
        {
            err("name", "must be 1 to 120 characters");
        }
        if !crate::telemetry::batch::valid_metric(&self.metric) {
            err("metric", "must match ^[a-z][a-z0-9_.]{0,63}$");
        }
        let severity = Severity::parse(&self.severity);
        if severity.is_none() {
            err("severity", "must be info, warning or critical");
        }
        for (f, v) in [("threshold", self.threshold), ("low", self.low), ("high", self.high), ("alpha", self.alpha)] {
            if v.is_some_and(|v| !v.is_finite()) {
                err(f, "must be a finite number");
            }
        }
        if !(0..=2_592_000).contains(&self.for_seconds) {
            err("forSeconds", "must be between 0 and 2592000 (30 days)");
        }
        match self.kind {
            Kind::Threshold | Kind::Rate => match self.op {
                None => err("op", "is required for threshold and rate rules: gt, lt or outside"),
                Some(Op::Gt | Op::Lt) if self.threshold.is_none() => err("threshold", "is required with op gt or lt"),
                Some(Op::Outside) => match (self.low, self.high) {
                    (Some(l), Some(h)) if l < h => {}
                    (Some(_), Some(_)) => err("low", "must be below high"),
                    _ => err("low", "low and high are both required with op outside"),
                },
                _ => {}
            },
            Kind::Stale => {
                if self.for_seconds < 1 {
                    err("forSeconds", "is required for stale rules (seconds without a reading, at least 1)");
                }
            }
            Kind::Anomaly => {
                if self.threshold.is_some_and(|k| k <= 0.0) {
                    err("threshold", "is k, the number of standard deviations, and must be above 0");
                }
                if self.alpha.is_some_and(|a| !(a > 0.0 && a <= 1.0)) {
                    err("alpha", "must be above 0 and at most 1");
                }
                if self.warmup_samples.is_some_and(|w| !(2..=100_000).contains(&w)) {
                    err("warmupSamples", "must be between 2 and 100000");
                }
            }
        }
        if self.kind != Kind::Anomaly {
            if self.alpha.is_some() {
                err("alpha", "applies to anomaly rules only");
            }
            if self.warmup_samples.is_some() {
                err("warmupSamples", "applies to anomaly rules only");
            }
        }
        match severity {
            Some(s) if bad.is_empty() => Ok(s),
            _ => Err(RuleError::Invalid(bad)),
        }
    }
}

/// A rule's device must be a live device of its grower.
pub async fn check_device<C: ConnectionTrait>(
    db: &C,
    grower_id: GrowerId,
    device_id: Option<DeviceId>,
) -> Result<(), RuleError> {
    if let Some(d) = device_id {
        let found = access::find_live_device(db, d.into()).await?;
        if found.is_none_or(|dev| dev.grower_id != Uuid::from(grower_id)) {
            return Err(RuleError::DeviceNotInGrower);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> RuleSpec {
        RuleSpec {
            device_id: None,
            name: None,
            metric: "temp".into(),
            kind,
            op: Some(Op::Gt),
            threshold: Some(30.0),
            low: None,
            high: None,
            for_seconds: 0,
            severity: "warning".into(),
            enabled: true,
            auto_resolve: true,
            alpha: None,
            warmup_samples: None,
        }
    }

    fn fields(e: RuleError) -> Vec<String> {
        match e {
            RuleError::Invalid(d) => d.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sound_rule_gives_its_severity() {
        assert_eq!(spec(Kind::Threshold).check().unwrap(), Severity::Warning);
    }

    #[test]
    fn every_problem_is_named_in_order() {
        let mut s = spec(Kind::Stale);
        s.severity = "loud".into();
        s.metric = "Temp".into();
        s.alpha = Some(0.5);
        assert_eq!(fields(s.check().unwrap_err()), ["metric", "severity", "forSeconds", "alpha"]);
        let mut s = spec(Kind::Threshold);
        s.op = Some(Op::Outside);
        (s.low, s.high) = (Some(5.0), Some(1.0));
        assert_eq!(fields(s.check().unwrap_err()), ["low"]);
    }

    #[test]
    fn a_stored_rule_round_trips_through_its_definition() {
        let now = Utc::now();
        let s = spec(Kind::Rate);
        let identity = Identity::new(Uuid::now_v7().into(), Uuid::now_v7().into(), now);
        let r = s.clone().into_rule(Severity::Warning, identity);
        assert_eq!(RuleSpec::of(&r), s);
        assert_eq!(RuleSpec::of(&r).into_rule(Severity::Warning, Identity::of(&r, now)), r);
    }
}
