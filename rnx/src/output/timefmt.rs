//! Showing the server's RFC 3339 times and elapsed durations to people.
//!
//! Times are shown in the zone the server sent (UTC for our server), as Joblet's rnx does.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

fn date_time(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&fmt).unwrap_or_else(|_| t.to_string())
}

fn zone(offset: UtcOffset) -> String {
    if offset.is_utc() {
        return "UTC".to_string();
    }
    let (h, m, _) = offset.as_hms();
    let sign = if offset.is_negative() { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

/// `2026-11-23 16:20:50 UTC`; "Not available" when empty; the raw text if unparsable.
pub fn long(s: &str) -> String {
    if s.trim().is_empty() {
        return "Not available".to_string();
    }
    match parse_rfc3339(s) {
        Some(t) => format!("{} {}", date_time(t), zone(t.offset())),
        None => s.to_string(),
    }
}

/// `2026-11-23 16:20:50` for tables; "N/A" when empty; the raw text if unparsable.
pub fn short(s: &str) -> String {
    if s.trim().is_empty() {
        return "N/A".to_string();
    }
    parse_rfc3339(s)
        .map(date_time)
        .unwrap_or_else(|| s.to_string())
}

/// Time from `from` to `to`, or `None` if either is missing or they are out of order.
pub fn between(from: &str, to: OffsetDateTime) -> Option<Duration> {
    let from = parse_rfc3339(from)?;
    Duration::try_from(to - from).ok()
}

/// `4.2s`, `3.5m`, `2h5m`, `1d3h`: Joblet's way of showing a duration.
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let whole = d.as_secs();
    if whole < 60 {
        format!("{secs:.1}s")
    } else if whole < 3600 {
        format!("{:.1}m", secs / 60.0)
    } else if whole < 86_400 {
        let (h, m) = (whole / 3600, whole / 60 % 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else {
        let (days, h) = (whole / 86_400, whole / 3600 % 24);
        if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        }
    }
}

/// Now, as RFC 3339 UTC with seconds (for JSON log lines).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_shown_in_their_zone() {
        assert_eq!(long("2026-11-23T16:20:50Z"), "2026-11-23 16:20:50 UTC");
        assert_eq!(
            long("2026-11-23T16:20:50+02:00"),
            "2026-11-23 16:20:50 +02:00"
        );
        assert_eq!(
            long("2026-11-23T16:20:50.123-05:30"),
            "2026-11-23 16:20:50 -05:30"
        );
        assert_eq!(long(""), "Not available");
        assert_eq!(long("yesterday"), "yesterday");
        assert_eq!(short("2026-11-23T16:20:50Z"), "2026-11-23 16:20:50");
        assert_eq!(short(""), "N/A");
    }

    #[test]
    fn durations_look_like_joblets() {
        assert_eq!(elapsed(Duration::from_millis(4200)), "4.2s");
        assert_eq!(elapsed(Duration::from_secs(210)), "3.5m");
        assert_eq!(elapsed(Duration::from_secs(7200)), "2h");
        assert_eq!(elapsed(Duration::from_secs(7500)), "2h5m");
        assert_eq!(elapsed(Duration::from_secs(86_400)), "1d");
        assert_eq!(elapsed(Duration::from_secs(97_200)), "1d3h");
    }

    #[test]
    fn between_needs_ordered_parsable_times() {
        let end = parse_rfc3339("2026-01-01T00:01:00Z").unwrap();
        assert_eq!(
            between("2026-01-01T00:00:00Z", end),
            Some(Duration::from_secs(60))
        );
        assert_eq!(between("2026-01-01T00:02:00Z", end), None);
        assert_eq!(between("", end), None);
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let now = now_rfc3339();
        assert!(parse_rfc3339(&now).is_some(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
    }
}
