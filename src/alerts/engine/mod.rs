//! Rule evaluation as plain functions over a rule and its per-device state, so every kind can
//! be tested without a database.
//!
//! Time is the readings' own timestamps (a gateway that uploads a buffered hour evaluates as
//! that hour happened); only `stale` compares with the clock. Readings at or before the last
//! one evaluated for a (device, metric) are skipped by the caller ([`Series::admits`]), which
//! makes a retried evaluation and a resent batch harmless.
//!
//! - **threshold**: the value against `op` (`gt`/`lt` `threshold`, or `outside` `low..high`).
//! - **rate**: the change per minute since the previous reading, against the same `op`.
//! - **anomaly**: the value against an exponentially weighted mean and variance of the
//!   device's metric (weight `alpha`, default 0.1): it fires when `|x - mean| > k·σ`, with
//!   `k = threshold` (default 3), after `warmupSamples` readings (default 20). Each reading is
//!   compared with the baseline *before* it is folded in.
//! - **stale**: no reading for `forSeconds` (checked periodically); a reading clears it.
//!
//! For threshold, rate and anomaly, `forSeconds` is how long the condition must hold: the
//! rule fires on the first breaching reading at least that long after the first breaching
//! reading of the streak; any reading that does not breach ends the streak (and clears).

use chrono::{DateTime, Utc};

mod extremes;
mod message;
#[cfg(test)]
mod tests;

pub use super::entity::rule::{Kind, Op};
pub use extremes::Extremes;
pub use message::{Observed, message};

use extremes::rate_between;

pub const DEFAULT_ALPHA: f64 = 0.1;
pub const DEFAULT_WARMUP: i64 = 20;
pub const DEFAULT_K: f64 = 3.0;

/// A rule, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: Kind,
    pub metric: String,
    pub op: Option<Op>,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub for_seconds: i64,
    pub alpha: f64,
    pub warmup: i64,
}

/// The rule as stored.
impl From<&super::entity::rule::Model> for Rule {
    fn from(m: &super::entity::rule::Model) -> Self {
        Self {
            kind: m.kind,
            metric: m.metric.clone(),
            op: m.op,
            threshold: m.threshold,
            low: m.low,
            high: m.high,
            for_seconds: i64::from(m.for_seconds.max(0)),
            alpha: m.alpha.unwrap_or(DEFAULT_ALPHA),
            warmup: m.warmup_samples.map_or(DEFAULT_WARMUP, i64::from),
        }
    }
}

impl Rule {
    /// Whether the rule keeps state of its own per device (a streak timer or a baseline).
    pub fn keeps_state(&self) -> bool {
        self.kind == Kind::Anomaly || (self.for_seconds > 0 && self.kind != Kind::Stale)
    }

    fn breaches(&self, x: f64) -> bool {
        match self.op {
            Some(Op::Gt) => self.threshold.is_some_and(|t| x > t),
            Some(Op::Lt) => self.threshold.is_some_and(|t| x < t),
            Some(Op::Outside) => self.low.is_some_and(|l| x < l) || self.high.is_some_and(|h| x > h),
            None => false,
        }
    }

    fn bound(&self) -> String {
        match self.op {
            Some(Op::Gt) => format!("above {}", self.threshold.unwrap_or_default()),
            Some(Op::Lt) => format!("below {}", self.threshold.unwrap_or_default()),
            _ => format!("outside {}..{}", self.low.unwrap_or_default(), self.high.unwrap_or_default()),
        }
    }
}

/// A rule's own evaluation state for one device: the start of a breach streak (`forSeconds`)
/// and the anomaly baseline. Rules that use neither keep none ([`Rule::keeps_state`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub breach_since: Option<DateTime<Utc>>,
    pub mean: f64,
    pub variance: f64,
    pub samples: i64,
}

/// The last reading evaluated of one (device, metric), shared by every rule that watches it:
/// the previous value of a rate, and the point before which readings are not evaluated again.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Series {
    pub last: Option<(DateTime<Utc>, f64)>,
}

impl Series {
    /// Whether a reading at `ts` is new (after the last one evaluated).
    pub fn admits(&self, ts: DateTime<Utc>) -> bool {
        self.last.is_none_or(|(last, _)| ts > last)
    }
}

/// What one reading (or one stale check) means for the alert of a (rule, device).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The condition holds (long enough): open the alert, or update the open one.
    Fire { value: f64, observed: Observed },
    /// The condition does not hold: resolve an open alert (when the rule auto-resolves).
    Clear,
    /// Nothing to say yet (warming up, first reading of a rate, within `forSeconds`, or an old reading).
    Nothing,
}

/// Folds `x` into an exponentially weighted mean and variance (Finch, "Incremental calculation
/// of weighted mean and variance", 2009).
pub fn ewma_update(mean: f64, variance: f64, samples: i64, alpha: f64, x: f64) -> (f64, f64) {
    if samples == 0 {
        return (x, 0.0);
    }
    let diff = x - mean;
    let incr = alpha * diff;
    (mean + incr, (1.0 - alpha) * (variance + diff * incr))
}

/// Evaluates one new reading of a series whose reading before it was `previous`.
pub fn step(
    rule: &Rule,
    st: &mut State,
    previous: Option<(DateTime<Utc>, f64)>,
    ts: DateTime<Utc>,
    value: f64,
) -> Outcome {
    // `Some((breached, observed))` when the rule could judge this reading.
    let judged: Option<(bool, Observed)> = match rule.kind {
        Kind::Stale => {
            st.breach_since = None;
            return Outcome::Clear;
        }
        Kind::Threshold => Some((rule.breaches(value), Observed::Value)),
        Kind::Rate => previous
            .and_then(|(t0, v0)| rate_between(t0, v0, ts, value))
            .map(|rate| (rule.breaches(rate), Observed::Rate(rate))),
        Kind::Anomaly => {
            let k = rule.threshold.unwrap_or(DEFAULT_K);
            let judged = (st.samples >= rule.warmup).then(|| {
                let sd = st.variance.max(0.0).sqrt();
                let deviation = (value - st.mean).abs();
                let breached = sd > 0.0 && deviation > k * sd;
                let sigmas = if sd > 0.0 { deviation / sd } else { 0.0 };
                (breached, Observed::Anomaly { sigmas, mean: st.mean, k })
            });
            let (mean, variance) = ewma_update(st.mean, st.variance, st.samples, rule.alpha, value);
            st.mean = mean;
            st.variance = variance;
            st.samples += 1;
            judged
        }
    };
    let Some((breached, observed)) = judged else { return Outcome::Nothing };
    if !breached {
        st.breach_since = None;
        return Outcome::Clear;
    }
    let since = *st.breach_since.get_or_insert(ts);
    if (ts - since).num_seconds() >= rule.for_seconds { Outcome::Fire { value, observed } } else { Outcome::Nothing }
}

/// A stale check: `last` is the latest reading (or when watching began), `now` the clock.
pub fn stale(rule: &Rule, last: DateTime<Utc>, now: DateTime<Utc>) -> Outcome {
    let age = (now - last).num_seconds();
    if age >= rule.for_seconds {
        Outcome::Fire { value: age as f64, observed: Observed::Silence(age) }
    } else {
        Outcome::Nothing
    }
}
