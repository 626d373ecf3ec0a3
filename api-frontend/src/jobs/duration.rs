//! Job timeouts as clients write them (`30s`, `5m`, `1h`, `2h30m`, `1.5h`, `500ms`), in the
//! style of Go's `time.ParseDuration` that rnx uses, and back.

const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timeout {input:?}: {why} (write it like 30s, 5m, 1h or 2h30m)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses a duration into milliseconds. A bare `0` is zero, as in Go.
pub fn parse_ms(input: &str) -> Result<u64, DurationError> {
    let err = |why| DurationError {
        input: input.chars().take(64).collect(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s == "0" {
        return Ok(0);
    }
    if s.starts_with('-') {
        return Err(err("it is negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("a unit must follow a number"));
        }
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(err(if unit.is_empty() {
                "a number has no unit"
            } else {
                "units are ms, s, m and h"
            }));
        };
        total = total
            .checked_add(scaled(number, scale).ok_or_else(|| err("not a number or too large"))?)
            .ok_or_else(|| err("too large"))?;
        rest = next;
    }
    Ok(total)
}

/// `number` (decimal, like `1.5`) times `scale` milliseconds, rounded down to whole ms.
fn scaled(number: &str, scale: u64) -> Option<u64> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let whole: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ms = whole.checked_mul(scale)?;
    // Up to 9 fraction digits matter at most; more cannot change whole milliseconds.
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        let f: u64 = digits.parse().ok()?;
        let denom = 10u64.pow(u32::try_from(digits.len()).ok()?);
        ms = ms.checked_add(f.checked_mul(scale)? / denom)?;
    }
    Some(ms)
}

/// Formats milliseconds compactly (`2h30m`, `45s`, `1s500ms`); empty for zero.
pub fn format_ms(ms: u64) -> String {
    let mut out = String::new();
    let mut left = ms;
    for (name, scale) in UNITS.iter().rev() {
        let n = left / scale;
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
            left %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("5m"), Ok(300_000));
        assert_eq!(parse_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ms("2h30m"), Ok(9_000_000));
        assert_eq!(parse_ms("1h0m10s"), Ok(3_610_000));
        assert_eq!(parse_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_ms(".5s"), Ok(500));
        assert_eq!(parse_ms("250ms"), Ok(250));
        assert_eq!(parse_ms(" 10s "), Ok(10_000));
        assert_eq!(parse_ms("0"), Ok(0));
        assert_eq!(parse_ms("0s"), Ok(0));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "10",
            "s",
            "-5s",
            "5d",
            "5 s",
            "1..5s",
            "1.2.3s",
            ".s",
            "10us",
            "abc",
            "99999999999999999999h",
            "5s-",
            "h5",
        ] {
            assert!(parse_ms(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_ms("5d").unwrap_err().to_string();
        assert!(e.contains("5d") && e.contains("2h30m"), "{e}");
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(parse_ms(&format!("{}h", u64::MAX / 1000)).is_err());
        assert!(parse_ms(&format!("{}ms{}ms", u64::MAX, 1)).is_err());
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(format_ms(0), "");
        assert_eq!(format_ms(30_000), "30s");
        assert_eq!(format_ms(9_000_000), "2h30m");
        assert_eq!(format_ms(1_500), "1s500ms");
        for ms in [1, 999, 1_000, 61_000, 3_600_001, 90_061_001] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms), "{ms}");
        }
    }
}
