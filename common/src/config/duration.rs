//! Durations written as humane strings: an integer and a unit, `"250ms"`, `"5s"`, `"2m"`, `"1h"`
//! (`"us"` and `"ns"` too, so every `Duration` can be written back exactly). Used as
//! `#[serde(with = "crate::config::duration")]`; a value is written back in the largest unit that
//! keeps it exact, so `parse(&format(d)) == Some(d)` for every `d`.

use std::fmt;
use std::time::Duration;

use serde::{Deserializer, Serializer, de};

/// Units from largest to smallest, with their length in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// What the error messages suggest.
pub(crate) const EXAMPLES: &str = r#""500ms", "5s" or "2m""#;

/// `"5s"` -> 5 seconds. `None` for anything but digits followed by one known unit.
pub fn parse(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let count: u128 = digits.parse().ok()?;
    let (_, unit_nanos) = UNITS.iter().find(|(name, _)| *name == unit)?;
    let nanos = count.checked_mul(*unit_nanos)?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// 90 seconds -> `"90s"`, 120 seconds -> `"2m"`, zero -> `"0s"`.
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let (name, unit_nanos) =
        UNITS.iter().find(|(_, unit_nanos)| nanos % unit_nanos == 0).expect("ns divides anything");
    format!("{}{name}", nanos / unit_nanos)
}

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// An optional duration: `"off"` (or `""`) is `None`, and `None` is written `"off"`.
pub mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::serialize(duration, serializer),
            None => serializer.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_any(OptionalVisitor)
    }

    struct OptionalVisitor;

    impl<'de> de::Visitor<'de> for OptionalVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a duration like {EXAMPLES}, or \"off\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match text {
                "" | "off" => Ok(None),
                text => DurationVisitor.visit_str(text).map(Some),
            }
        }

        fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
            DurationVisitor.visit_i64(number).map(Some)
        }

        fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
            DurationVisitor.visit_u64(number).map(Some)
        }

        fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
            DurationVisitor.visit_f64(number).map(Some)
        }

        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            DurationVisitor.visit_bool(value).map(Some)
        }
    }
}

struct DurationVisitor;

impl DurationVisitor {
    fn refuse<E: de::Error>(shown: impl fmt::Display) -> E {
        E::custom(format!("{shown} is not a duration; write it like {EXAMPLES}"))
    }
}

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a duration like {EXAMPLES}")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).ok_or_else(|| Self::refuse(format_args!("{text:?}")))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Duration, E> {
        Err(Self::refuse(number))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Duration, E> {
        Err(Self::refuse(number))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Duration, E> {
        Err(Self::refuse(number))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Duration, E> {
        Err(Self::refuse(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7us"), Some(Duration::from_micros(7)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn refuses_garbage() {
        for text in
            ["", "5", "s", "ms", "5 s", "-5s", "1.5s", "5sec", "5S", "99999999999999999999h"]
        {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::ZERO), "0s");
        let odd = Duration::new(3, 7);
        assert_eq!(parse(&format(odd)), Some(odd));
    }
}
