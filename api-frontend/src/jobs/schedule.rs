//! `RunJobRequest.schedule`: an RFC 3339 time (clients turn `30s` or `2h30m` into one), at
//! most a few seconds in the past and at most a year ahead.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time this far in the past is taken as "now": a relative schedule of a few seconds
/// loses some on the way (rounding to the second, the network).
pub const PAST_TOLERANCE_NS: u64 = 5_000_000_000;
/// The latest a job may be scheduled, from now (a leap year's worth).
pub const MAX_AHEAD_NS: u64 = 366 * 24 * 3600 * 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "invalid schedule {0:?}: not an RFC 3339 time like 2026-11-23T16:20:50Z or \
         2026-11-23T17:20:50+01:00"
    )]
    Format(String),
    #[error("invalid schedule {input:?}: that time passed {ago_s} s ago")]
    Past { input: String, ago_s: u64 },
    #[error("invalid schedule {0:?}: more than a year ahead")]
    TooFar(String),
}

/// Parses `input` against `now_ns`; returns when the job is due (Unix ns, never before
/// `now_ns - PAST_TOLERANCE_NS`).
pub fn parse(input: &str, now_ns: u64) -> Result<u64, ScheduleError> {
    let shown: String = input.chars().take(64).collect();
    let t = OffsetDateTime::parse(input.trim(), &Rfc3339)
        .map_err(|_| ScheduleError::Format(shown.clone()))?;
    let nanos = t.unix_timestamp_nanos();
    let at = match u64::try_from(nanos) {
        Ok(at) => at,
        Err(_) if nanos < 0 => 0,
        Err(_) => return Err(ScheduleError::TooFar(shown)),
    };
    if at + PAST_TOLERANCE_NS < now_ns {
        return Err(ScheduleError::Past {
            input: shown,
            ago_s: (now_ns - at) / 1_000_000_000,
        });
    }
    if at > now_ns.saturating_add(MAX_AHEAD_NS) {
        return Err(ScheduleError::TooFar(shown));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T16:20:50Z
    const NOW: u64 = 1_795_450_850_000_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn accepts_rfc3339_in_any_offset() {
        assert_eq!(parse("2026-11-23T16:21:20Z", NOW), Ok(NOW + 30 * S));
        assert_eq!(parse("2026-11-23T17:21:20+01:00", NOW), Ok(NOW + 30 * S));
        assert_eq!(
            parse("2026-11-23T16:21:20.5Z", NOW),
            Ok(NOW + 30 * S + S / 2)
        );
        assert_eq!(parse(" 2026-11-23T16:21:20Z ", NOW), Ok(NOW + 30 * S));
    }

    #[test]
    fn a_moment_ago_is_now_but_the_past_is_refused() {
        assert_eq!(parse("2026-11-23T16:20:47Z", NOW), Ok(NOW - 3 * S));
        let e = parse("2026-11-23T16:19:50Z", NOW).unwrap_err();
        assert_eq!(
            e,
            ScheduleError::Past {
                input: "2026-11-23T16:19:50Z".into(),
                ago_s: 60
            }
        );
        assert!(e.to_string().contains("60 s ago"), "{e}");
        assert!(matches!(
            parse("1960-01-01T00:00:00Z", NOW),
            Err(ScheduleError::Past { .. })
        ));
    }

    #[test]
    fn more_than_a_year_ahead_is_refused() {
        assert!(parse("2027-11-23T16:20:50Z", NOW).is_ok());
        let e = parse("2027-11-25T16:20:50Z", NOW).unwrap_err();
        assert!(matches!(e, ScheduleError::TooFar(_)), "{e}");
        assert!(parse("9999-12-31T23:59:59Z", NOW).is_err());
    }

    #[test]
    fn relative_and_local_forms_are_for_clients_to_convert() {
        for bad in [
            "30s",
            "2h30m",
            "2026-11-23 16:21:20",
            "2026-11-23T16:21:20",
            "tomorrow",
            "",
        ] {
            let e = parse(bad, NOW).unwrap_err();
            assert!(matches!(e, ScheduleError::Format(_)), "{bad:?}: {e}");
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }
}
