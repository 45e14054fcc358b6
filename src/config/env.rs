//! Reading variables: the one error type (`ConfigError`, naming the variable) and the parsers
//! every section uses, so a bad value reads the same whichever section it belongs to.

use std::{collections::HashMap, fmt, str::FromStr, time::Duration};

/// A value that must never reach a log line. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One line naming the variable and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

pub(super) fn bad(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { var, problem: problem.into() }
}

/// Reads variables from a map, so tests can build a config without touching the process env.
pub(super) struct Env<'a>(pub(super) &'a HashMap<String, String>);

impl Env<'_> {
    /// The trimmed value; empty counts as unset.
    pub(super) fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    pub(super) fn parse<T: FromStr>(&self, var: &'static str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| bad(var, format!("expected {expected}, got {raw:?}"))),
        }
    }

    /// A whole number within `range` (`default` when unset).
    pub(super) fn ranged<T>(
        &self,
        var: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        expected: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let n = self.parse(var, default, expected)?;
        if range.contains(&n) { Ok(n) } else { Err(bad(var, format!("expected {}..={}", range.start(), range.end()))) }
    }

    pub(super) fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(bad(var, format!("expected true or false, got {other:?}"))),
        }
    }

    pub(super) fn seconds(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(var, default as f64, "a number of seconds")?;
        if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
            return Err(bad(var, format!("expected a number of seconds between 0 and 86400, got {secs}")));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// A secret given inline (`var`, with `\n` for newlines) or as a file (`file_var`).
    pub(super) fn secret(&self, var: &'static str, file_var: &'static str) -> Result<Option<Secret>, ConfigError> {
        match (self.get(var), self.get(file_var)) {
            (Some(v), _) => Ok(Some(Secret::new(v.replace("\\n", "\n")))),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|v| Some(Secret::new(v)))
                .map_err(|e| bad(file_var, format!("cannot read {path:?}: {e}"))),
            (None, None) => Ok(None),
        }
    }

    /// An optional `secret` that, when set, is kept as given.
    pub(super) fn opt_secret(&self, var: &'static str) -> Option<Secret> {
        self.get(var).map(Secret::new)
    }
}

/// An http(s) URL, without a trailing slash.
pub(super) fn http_url(var: &'static str, raw: &str) -> Result<String, ConfigError> {
    let parsed = url::Url::parse(raw).map_err(|e| bad(var, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad(var, "expected an https:// URL"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}
