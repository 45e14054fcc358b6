//! The engine's rules, kind by kind, without a database.

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
