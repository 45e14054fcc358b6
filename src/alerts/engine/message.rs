//! An alert's text: what a firing reading was found to be ([`Observed`]), written out only for
//! the reading whose message is stored.

use super::Rule;

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
