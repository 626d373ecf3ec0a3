//! Durations as Joblet's configs write them: Go's `time.ParseDuration` syntax (`100ms`, `10s`,
//! `1h30m`, `1.5h`), plus a bare `0`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A configured duration; deserializes from a Go duration string or the number 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

/// The longest duration we accept anywhere in the config: a year is already absurd.
const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses `s` as a Go duration: one or more `<decimal><unit>` terms, units `ns us µs ms s m h`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration (write e.g. 10s, 500ms, 1h30m)".into());
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(format!(
                "{s:?} is not a duration (write e.g. 10s, 500ms, 1h30m)"
            ));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_ns = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("{s:?} lacks a unit (ns, us, ms, s, m, h)")),
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (ns, us, ms, s, m, h)"
                ));
            }
        };
        total_ns += value * unit_ns;
        rest = next;
    }
    if total_ns > MAX.as_nanos() as f64 {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s, 500ms or 1h30m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse(v).map(GoDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                if v == 0 {
                    Ok(GoDuration(Duration::ZERO))
                } else {
                    Err(E::custom(format!(
                        "{v} lacks a unit; write e.g. {v}s or {v}ms"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("{v} is negative"))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250us").unwrap(), Duration::from_micros(250));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "10", "10x", "-5s", "s", "1h-3m", ".s", "9999h"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse("10").unwrap_err().contains("unit"));
        assert!(parse("10x").unwrap_err().contains("\"x\""));
    }
}
