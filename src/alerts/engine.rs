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

pub use super::entity::rule::{Kind, Op};

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
fn rate_between(t0: DateTime<Utc>, v0: f64, ts: DateTime<Utc>, value: f64) -> Option<f64> {
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

/// What a firing reading was found to be, from which [`message`] writes the alert's text.
/// Kept as numbers so that only the reading whose message is stored pays for formatting it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observed {
    /// The value itself (threshold).
    Value,
    /// The change per minute (rate).
    Rate(f64),
    /// How far from the baseline, in standard deviations, the baseline's mean, and the limit `k`.
    Anomaly { sigmas: f64, mean: f64, k: f64 },
    /// Seconds without a reading (stale).
    Silence(i64),
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

/// The alert's text for a firing reading.
pub fn message(rule: &Rule, value: f64, observed: Observed) -> String {
    let text = match observed {
        Observed::Value => format!("{} is {} ({})", rule.metric, value, rule.bound()),
        Observed::Rate(rate) => format!("{} changes by {:.4}/min ({} per minute)", rule.metric, rate, rule.bound()),
        Observed::Anomaly { sigmas, mean, k } => {
            format!("{} is {}, {:.1}σ from its usual {:.4} (limit {}σ)", rule.metric, value, sigmas, mean, k)
        }
        Observed::Silence(age) => {
            return format!("no {} reading for {} s (limit {} s)", rule.metric, age, rule.for_seconds);
        }
    };
    if rule.for_seconds > 0 { format!("{text} for at least {} s", rule.for_seconds) } else { text }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// Feeds readings of one series to one rule, as an evaluation does: old ones are skipped.
    struct Feed {
        st: State,
        series: Series,
    }

    impl Feed {
        fn new() -> Self {
            Self { st: State::default(), series: Series::default() }
        }

        fn step(&mut self, r: &Rule, ts: DateTime<Utc>, v: f64) -> Outcome {
            if !self.series.admits(ts) {
                return Outcome::Nothing;
            }
            let out = step(r, &mut self.st, self.series.last, ts, v);
            self.series.last = Some((ts, v));
            out
        }
    }

    fn rule(kind: Kind, op: Option<Op>, threshold: Option<f64>, for_seconds: i64) -> Rule {
        Rule {
            kind,
            metric: "temp".into(),
            op,
            threshold,
            low: None,
            high: None,
            for_seconds,
            alpha: DEFAULT_ALPHA,
            warmup: DEFAULT_WARMUP,
        }
    }

    #[test]
    fn threshold_waits_for_seconds_and_a_normal_reading_ends_the_streak() {
        let r = rule(Kind::Threshold, Some(Op::Gt), Some(30.0), 60);
        let mut st = Feed::new();
        assert_eq!(st.step(&r, t(0), 31.0), Outcome::Nothing);
        assert_eq!(st.step(&r, t(59), 32.0), Outcome::Nothing);
        assert!(matches!(st.step(&r, t(60), 33.0), Outcome::Fire { value, .. } if value == 33.0));
        assert_eq!(st.step(&r, t(61), 20.0), Outcome::Clear);
        // A new streak starts from zero.
        assert_eq!(st.step(&r, t(62), 31.0), Outcome::Nothing);
        // Old or repeated readings are skipped.
        assert_eq!(st.step(&r, t(62), 99.0), Outcome::Nothing);
        assert_eq!(st.step(&r, t(10), 99.0), Outcome::Nothing);
    }

    #[test]
    fn outside_and_lt_compare_as_documented() {
        let mut r = rule(Kind::Threshold, Some(Op::Outside), None, 0);
        r.low = Some(10.0);
        r.high = Some(20.0);
        let mut st = Feed::new();
        assert!(matches!(st.step(&r, t(0), 9.0), Outcome::Fire { .. }));
        assert_eq!(st.step(&r, t(1), 10.0), Outcome::Clear);
        assert!(matches!(st.step(&r, t(2), 20.5), Outcome::Fire { .. }));
        let r = rule(Kind::Threshold, Some(Op::Lt), Some(5.0), 0);
        assert!(matches!(Feed::new().step(&r, t(0), 4.9), Outcome::Fire { .. }));
    }

    #[test]
    fn rate_is_change_per_minute() {
        let r = rule(Kind::Rate, Some(Op::Gt), Some(2.0), 0);
        let mut st = Feed::new();
        assert_eq!(st.step(&r, t(0), 10.0), Outcome::Nothing, "no rate from one reading");
        assert_eq!(st.step(&r, t(60), 11.5), Outcome::Clear, "1.5/min");
        assert!(matches!(st.step(&r, t(90), 13.0), Outcome::Fire { .. }), "3/min");
    }

    #[test]
    fn messages_say_what_was_observed() {
        let mut r = rule(Kind::Threshold, Some(Op::Gt), Some(30.0), 0);
        assert_eq!(message(&r, 31.5, Observed::Value), "temp is 31.5 (above 30)");
        r.for_seconds = 60;
        assert_eq!(message(&r, 31.5, Observed::Value), "temp is 31.5 (above 30) for at least 60 s");
        let r = rule(Kind::Rate, Some(Op::Gt), Some(2.0), 0);
        assert_eq!(message(&r, 13.0, Observed::Rate(3.0)), "temp changes by 3.0000/min (above 2 per minute)");
        let r = rule(Kind::Anomaly, None, None, 0);
        let observed = Observed::Anomaly { sigmas: 4.26, mean: 20.0, k: 3.0 };
        assert_eq!(message(&r, 29.0, observed), "temp is 29, 4.3σ from its usual 20.0000 (limit 3σ)");
        let r = rule(Kind::Stale, None, None, 300);
        assert_eq!(message(&r, 400.0, Observed::Silence(400)), "no temp reading for 400 s (limit 300 s)");
    }

    #[test]
    fn ewma_matches_its_definition() {
        let (m, v) = ewma_update(0.0, 0.0, 0, 0.5, 4.0);
        assert_eq!((m, v), (4.0, 0.0));
        let (m, v) = ewma_update(m, v, 1, 0.5, 8.0);
        assert_eq!(m, 6.0);
        assert_eq!(v, 0.5 * (0.0 + 4.0 * 2.0));
    }

    #[test]
    fn stale_fires_after_for_seconds() {
        let r = rule(Kind::Stale, None, None, 300);
        assert_eq!(stale(&r, t(0), t(299)), Outcome::Nothing);
        assert!(matches!(stale(&r, t(0), t(300)), Outcome::Fire { value, .. } if value == 300.0));
        assert_eq!(Feed::new().step(&r, t(400), 1.0), Outcome::Clear);
    }

    #[test]
    fn extremes_tell_exactly_whether_a_stateless_rule_fires() {
        // A small deterministic generator: runs of readings with irregular gaps, some of them
        // at or before the last reading evaluated, against every stateless rule shape.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut rules = Vec::new();
        for kind in [Kind::Threshold, Kind::Rate, Kind::Stale] {
            for op in [Op::Gt, Op::Lt, Op::Outside] {
                let mut r = rule(kind, Some(op), Some(50.0), 0);
                if op == Op::Outside {
                    (r.low, r.high) = (Some(10.0), Some(90.0));
                }
                rules.push(r);
            }
        }
        let (mut fired, mut quiet) = (0, 0);
        for _ in 0..2000 {
            let last = (next() % 3 > 0).then(|| (t(100), (next() % 100) as f64));
            let mut ts = 90 + (next() % 20) as i64;
            let readings: Vec<(DateTime<Utc>, f64)> = (0..(next() % 6))
                .map(|_| {
                    ts += (next() % 40) as i64 + 1;
                    (t(ts), (next() % 120) as f64 - 10.0)
                })
                .collect();
            let series = Series { last };
            let admitted: Vec<_> = readings.iter().copied().filter(|(ts, _)| series.admits(*ts)).collect();
            let e = Extremes::of(last, admitted.iter().copied());
            for r in &rules {
                assert!(!r.keeps_state());
                let mut feed = Feed { st: State::default(), series: Series { last } };
                let fires = readings.iter().any(|&(ts, v)| matches!(feed.step(r, ts, v), Outcome::Fire { .. }));
                assert_eq!(e.is_some_and(|e| r.may_fire(&e)), fires, "{r:?} over {readings:?} after {last:?}");
                if fires { fired += 1 } else { quiet += 1 }
            }
        }
        assert!(fired > 1000 && quiet > 1000, "both cases are exercised: {fired} fired, {quiet} quiet");
    }
}
