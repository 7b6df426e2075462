//! Human durations (`500ms`, `5s`, `2m`, `1h30m`, `1d`) for config values and output.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `500ms`, `90s`, `5m`, `1h30m`, `2d` (units: ms, s, m, h, d; no sign, no spaces).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number followed by ms, s, m, h or d (e.g. \"30s\", \"5m\")"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (ms, s, m, h or d), e.g. \"{value}s\""
                ))
            }
            unit => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ))
            }
        };
        let millis = value
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a number of seconds compactly for tables: `42s`, `5m12s`, `3h04m`, `12d3h`.
pub fn format_secs(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Deserializes a duration written as a string (`"5s"`).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Deserializes an optional duration written as a string.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("5").unwrap_err().contains("missing unit"));
        assert!(parse("5x").unwrap_err().contains("unknown unit \"x\""));
        assert!(parse("-5s").unwrap_err().contains("expected a number"));
        assert!(parse("s").unwrap_err().contains("expected a number"));
        assert!(parse("99999999999999999999s").is_err());
        assert!(parse("999999999999999d").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_secs(42), "42s");
        assert_eq!(format_secs(312), "5m12s");
        assert_eq!(format_secs(3 * 3600 + 4 * 60), "3h04m");
        assert_eq!(format_secs(12 * 86_400 + 3 * 3600), "12d3h");
    }
}
