//! Money: integer minor units (cents) in storage and arithmetic, a decimal string with two
//! places on the wire (`"19.90"`), never a float.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An amount in minor units. Serializes as `"19.90"`; deserializes only from such a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub i64);

/// The largest amount accepted from a client: 10^13 minor units (a hundred billion), far below
/// where sums of many items could overflow an `i64`.
pub const MAX_MINOR: i64 = 10_000_000_000_000;

impl Money {
    pub fn minor(self) -> i64 {
        self.0
    }

    /// Parses `"19.90"`, `"19.9"`, `"19"` or `"0.05"`: digits, an optional point and at most two
    /// decimals. No sign, exponent, spaces or thousands separators; at most [`MAX_MINOR`].
    pub fn parse(s: &str) -> Result<Money, &'static str> {
        const SHAPE: &str = "must be a decimal string with at most 2 places, such as \"19.90\"";
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 2 || (s.ends_with('.')) {
            return Err(SHAPE);
        }
        if whole.len() > 14 {
            return Err("is too large");
        }
        let whole: i64 = whole.parse().map_err(|_| SHAPE)?;
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| SHAPE)? * 10,
            _ => frac.parse().map_err(|_| SHAPE)?,
        };
        let minor = whole.checked_mul(100).and_then(|w| w.checked_add(frac)).ok_or("is too large")?;
        if minor > MAX_MINOR {
            return Err("is too large");
        }
        Ok(Money(minor))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string with at most 2 places, such as \"19.90\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse(v).map_err(|m| E::custom(format!("{v:?} {m}")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d{1,14}(\.\d{1,2})?$"))
            .description(Some("Money: a decimal string with two places, never a number"))
            .examples([serde_json::json!("19.90")])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_two_places() {
        assert_eq!(Money(1990).to_string(), "19.90");
        assert_eq!(Money(5).to_string(), "0.05");
        assert_eq!(Money(0).to_string(), "0.00");
        assert_eq!(Money(-150).to_string(), "-1.50");
        assert_eq!(serde_json::to_string(&Money(100)).unwrap(), "\"1.00\"");
    }

    #[test]
    fn parses_strictly() {
        assert_eq!(Money::parse("19.90"), Ok(Money(1990)));
        assert_eq!(Money::parse("19.9"), Ok(Money(1990)));
        assert_eq!(Money::parse("19"), Ok(Money(1900)));
        assert_eq!(Money::parse("0.05"), Ok(Money(5)));
        for bad in ["", ".5", "1.", "1.234", "-1", "+1", "1e3", " 1", "1,00", "abc", "1.2.3", "99999999999999999"] {
            assert!(Money::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Money::parse("100000000000.01").is_err());
        assert!(serde_json::from_str::<Money>("19.9").is_err(), "numbers are refused");
        assert_eq!(serde_json::from_str::<Money>("\"19.90\"").unwrap(), Money(1990));
    }
}
