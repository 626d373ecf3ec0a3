//! Durations typed by people: `30s`, `5m`, `1h`, `2h30m` (`--timeout`), and the looser
//! forms `--schedule` accepts (`1hour`, `30 min`, `45 seconds`).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("'{0}' has a number without a unit (use h, m or s, e.g. 90s or 1h30m)")]
    MissingUnit(String),
    #[error("'{text}': unknown unit '{unit}' (use {allowed})")]
    UnknownUnit {
        text: String,
        unit: String,
        allowed: &'static str,
    },
    #[error("'{0}' is not a duration (expected e.g. 30s, 5m, 1h, 2h30m)")]
    Malformed(String),
    #[error("'{0}' is too long")]
    TooLong(String),
    #[error("'{0}' is zero")]
    Zero(String),
}

/// Which spellings are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `h`, `m`, `s` only, no spaces: what the server parses for `timeout`.
    Strict,
    /// Joblet's `--schedule` units (`hour`, `mins`, `seconds`…), spaces and any case.
    Loose,
}

const STRICT_UNITS: &str = "h, m or s";
const LOOSE_UNITS: &str = "h/hour(s), m/min(s)/minute(s) or s/sec(s)/second(s)";

fn unit_seconds(unit: &str, style: Style) -> Option<u64> {
    match (style, unit) {
        (_, "h") | (Style::Loose, "hour" | "hours") => Some(3600),
        (_, "m") | (Style::Loose, "min" | "mins" | "minute" | "minutes") => Some(60),
        (_, "s") | (Style::Loose, "sec" | "secs" | "second" | "seconds") => Some(1),
        _ => None,
    }
}

/// Parses a sum of `<number><unit>` terms. Zero totals are refused.
pub fn parse(text: &str, style: Style) -> Result<Duration, DurationError> {
    let original = text.trim();
    let normalised = match style {
        Style::Strict => original.to_string(),
        Style::Loose => original.to_ascii_lowercase(),
    };
    if normalised.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = normalised.as_str();
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if style == Style::Loose {
            rest = rest.trim_start();
        }
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(DurationError::Malformed(original.to_string()));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLong(original.to_string()))?;
        rest = &rest[digits..];
        if style == Style::Loose {
            rest = rest.trim_start();
        }
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        if letters == 0 {
            return Err(DurationError::MissingUnit(original.to_string()));
        }
        let unit = &rest[..letters];
        let seconds = unit_seconds(unit, style).ok_or_else(|| DurationError::UnknownUnit {
            text: original.to_string(),
            unit: unit.to_string(),
            allowed: match style {
                Style::Strict => STRICT_UNITS,
                Style::Loose => LOOSE_UNITS,
            },
        })?;
        total = number
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| DurationError::TooLong(original.to_string()))?;
        rest = &rest[letters..];
    }
    if total == 0 {
        return Err(DurationError::Zero(original.to_string()));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Result<Duration, DurationError> {
        Ok(Duration::from_secs(n))
    }

    #[test]
    fn strict_accepts_the_server_forms() {
        assert_eq!(parse("30s", Style::Strict), secs(30));
        assert_eq!(parse("5m", Style::Strict), secs(300));
        assert_eq!(parse("1h", Style::Strict), secs(3600));
        assert_eq!(parse("2h30m", Style::Strict), secs(9000));
        assert_eq!(parse("1h1m1s", Style::Strict), secs(3661));
        assert_eq!(parse(" 90s ", Style::Strict), secs(90));
    }

    #[test]
    fn strict_refuses_other_spellings() {
        assert!(matches!(
            parse("30", Style::Strict),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse("1hour", Style::Strict),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("1 h", Style::Strict),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse("1H", Style::Strict),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("-5s", Style::Strict),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse("1.5h", Style::Strict),
            Err(DurationError::MissingUnit(_))
        ));
        assert_eq!(parse("", Style::Strict), Err(DurationError::Empty));
        assert!(matches!(
            parse("0s", Style::Strict),
            Err(DurationError::Zero(_))
        ));
    }

    #[test]
    fn loose_accepts_joblets_schedule_spellings() {
        assert_eq!(parse("1hour", Style::Loose), secs(3600));
        assert_eq!(parse("30min", Style::Loose), secs(1800));
        assert_eq!(parse("2h30m", Style::Loose), secs(9000));
        assert_eq!(parse("45 seconds", Style::Loose), secs(45));
        assert_eq!(parse("1 Hour 5 Mins", Style::Loose), secs(3900));
        assert!(matches!(
            parse("3 days", Style::Loose),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(matches!(
            parse("99999999999999999999h", Style::Strict),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse("9999999999999999h", Style::Strict),
            Err(DurationError::TooLong(_))
        ));
    }
}
