//! `--schedule`: an absolute time or a delay from now, resolved on the client into the
//! RFC 3339 instant the server expects (as Joblet's rnx does).

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::duration::{self, Style};

const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
const EXAMPLES: &str = "'1min', '30min', '1hour', '2h30m', '45s', '2025-07-18T20:02:48' (local time) \
                        or '2025-07-18T20:02:48Z'";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("'{0}' is neither a time nor a delay; examples: {EXAMPLES}")]
    Unrecognised(String),
    #[error("'{0}': a delay must be between 1 second and 365 days")]
    OutOfRange(String),
    #[error(
        "'{0}' has no time zone and the local one cannot be determined; add one, e.g. \
         2025-07-18T20:02:48Z or 2025-07-18T20:02:48+02:00"
    )]
    NoLocalZone(String),
}

/// Resolves `spec` against `now`. `local` turns a zone-less date-time into an instant in the
/// local zone (injected so tests do not depend on the machine's zone).
pub fn resolve(
    spec: &str,
    now: OffsetDateTime,
    local: impl Fn(PrimitiveDateTime) -> Option<OffsetDateTime>,
) -> Result<OffsetDateTime, ScheduleError> {
    let spec = spec.trim();
    if let Ok(t) = OffsetDateTime::parse(spec, &Rfc3339) {
        return Ok(t);
    }
    if let Some(naive) = parse_zoneless(spec) {
        return local(naive).ok_or_else(|| ScheduleError::NoLocalZone(spec.to_string()));
    }
    let delay = duration::parse(spec, Style::Loose)
        .map_err(|_| ScheduleError::Unrecognised(spec.to_string()))?;
    if delay > MAX_DELAY {
        return Err(ScheduleError::OutOfRange(spec.to_string()));
    }
    Ok(now + delay)
}

fn parse_zoneless(spec: &str) -> Option<PrimitiveDateTime> {
    let formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    formats
        .iter()
        .find_map(|f| PrimitiveDateTime::parse(spec, f).ok())
}

/// The instant as the server wants it: RFC 3339, UTC, whole seconds.
pub fn to_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// The machine's local zone at that wall-clock time. Only reliable while the process has a
/// single thread (the `time` crate refuses otherwise), which is why `job run` resolves its
/// schedule before connecting.
pub fn system_local(naive: PrimitiveDateTime) -> Option<OffsetDateTime> {
    let guess = UtcOffset::local_offset_at(naive.assume_utc()).ok()?;
    let first = naive.assume_offset(guess);
    // Across a DST change the offset at the resulting instant can differ; use that one.
    let offset = UtcOffset::local_offset_at(first).ok()?;
    Some(naive.assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    fn plus_two(naive: PrimitiveDateTime) -> Option<OffsetDateTime> {
        Some(naive.assume_offset(offset!(+2)))
    }

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);

    #[test]
    fn rfc3339_is_taken_as_is() {
        let t = resolve("2026-07-18T20:02:48-07:00", NOW, plus_two).unwrap();
        assert_eq!(to_rfc3339(t), "2026-07-19T03:02:48Z");
        let t = resolve("2026-07-18T20:02:48.5Z", NOW, plus_two).unwrap();
        assert_eq!(to_rfc3339(t), "2026-07-18T20:02:48Z");
    }

    #[test]
    fn zoneless_times_are_local() {
        for spec in [
            "2026-07-18T20:02:48",
            "2026-07-18 20:02:48",
            "2026-07-18T20:02",
            "2026-07-18 20:02",
        ] {
            let t = resolve(spec, NOW, plus_two).unwrap();
            assert_eq!(to_rfc3339(t).get(..16), Some("2026-07-18T18:02"), "{spec}");
        }
        assert_eq!(
            resolve("2026-07-18T20:02", NOW, |_| None),
            Err(ScheduleError::NoLocalZone("2026-07-18T20:02".into()))
        );
    }

    #[test]
    fn delays_are_added_to_now() {
        let t = resolve("2h30m", NOW, plus_two).unwrap();
        assert_eq!(to_rfc3339(t), "2026-03-01T14:30:00Z");
        let t = resolve("1hour", NOW, plus_two).unwrap();
        assert_eq!(to_rfc3339(t), "2026-03-01T13:00:00Z");
        let t = resolve("45s", NOW, plus_two).unwrap();
        assert_eq!(to_rfc3339(t), "2026-03-01T12:00:45Z");
    }

    #[test]
    fn bad_or_absurd_specs_are_refused() {
        assert!(matches!(
            resolve("tomorrow", NOW, plus_two),
            Err(ScheduleError::Unrecognised(_))
        ));
        assert!(matches!(
            resolve("0s", NOW, plus_two),
            Err(ScheduleError::Unrecognised(_))
        ));
        assert!(matches!(
            resolve("9000h", NOW, plus_two),
            Err(ScheduleError::OutOfRange(_))
        ));
        assert!(matches!(
            resolve("2026-13-40T99:00", NOW, plus_two),
            Err(ScheduleError::Unrecognised(_))
        ));
    }
}
