//! Durations in scenario files: `"1.5s"`, `"200ms"`, `"2m"`, `"10us"`, or a number of seconds.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration written in a scenario file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

/// Parses `"1.5s"`, `"200ms"`, `"2m"`, `"10us"` (a bare number is seconds).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try \"1.5s\" or \"200ms\")"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use us, ms, s or m)"
            ))
        }
    };
    seconds(value * scale).ok_or_else(|| format!("{text:?} is out of range"))
}

fn seconds(s: f64) -> Option<Duration> {
    (s.is_finite() && (0.0..1e9).contains(&s)).then(|| Duration::from_secs_f64(s))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Int(s) => Ok(Duration::from_secs(s)),
            Raw::Float(s) => seconds(s).ok_or_else(|| format!("{s} seconds is out of range")),
            Raw::Text(t) => parse(&t),
        };
        parsed.map(Dur).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert!(parse("fast").is_err());
        assert!(parse("1h").is_err());
        assert!(parse("-1s").is_err());
    }
}
