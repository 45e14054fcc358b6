//! The extremes of a run of readings: enough to tell whether a rule that keeps no state of its
//! own fires anywhere in the run, without stepping it through every reading.

use chrono::{DateTime, Utc};

use super::{Kind, Rule};

/// The extremes of a run of readings, and of the rates of change between consecutive ones:
/// enough to tell whether a rule that keeps no state of its own fires anywhere in the run,
/// without stepping it through every reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extremes {
    min: f64,
    max: f64,
    /// Per minute, as [`step`] computes it; `None` when no two readings give a rate.
    rates: Option<(f64, f64)>,
}

impl Extremes {
    /// Of `readings` (in time order), after `previous` (the last reading evaluated); `None` for
    /// no readings.
    pub fn of(
        previous: Option<(DateTime<Utc>, f64)>,
        readings: impl IntoIterator<Item = (DateTime<Utc>, f64)>,
    ) -> Option<Self> {
        let mut out: Option<Self> = None;
        let mut prev = previous;
        for (ts, v) in readings {
            let e = out.get_or_insert(Self { min: v, max: v, rates: None });
            e.min = e.min.min(v);
            e.max = e.max.max(v);
            if let Some(rate) = prev.and_then(|(t0, v0)| rate_between(t0, v0, ts, v)) {
                let (lo, hi) = e.rates.get_or_insert((rate, rate));
                *lo = lo.min(rate);
                *hi = hi.max(rate);
            }
            prev = Some((ts, v));
        }
        out
    }
}

/// Change per minute from one reading to the next; `None` unless time moved forward.
pub(super) fn rate_between(t0: DateTime<Utc>, v0: f64, ts: DateTime<Utc>, value: f64) -> Option<f64> {
    let minutes = (ts - t0).num_microseconds()? as f64 / 60e6;
    (minutes > 0.0).then(|| (value - v0) / minutes)
}

impl Rule {
    /// For a rule that keeps no state ([`Rule::keeps_state`] is false): whether stepping it
    /// through readings with these extremes fires at least once. (Its comparisons are monotone,
    /// so the extremes decide: `gt` by the largest, `lt` by the smallest, `outside` by both.)
    pub fn may_fire(&self, e: &Extremes) -> bool {
        match self.kind {
            Kind::Stale => false,
            Kind::Threshold => self.breaches(e.min) || self.breaches(e.max),
            Kind::Rate => e.rates.is_some_and(|(lo, hi)| self.breaches(lo) || self.breaches(hi)),
            Kind::Anomaly => true,
        }
    }
}
