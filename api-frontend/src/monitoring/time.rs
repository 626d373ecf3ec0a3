//! Times as the public API writes them: RFC 3339 in UTC, whole seconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the epoch as RFC 3339 (`2026-11-23T16:20:50Z`); empty if out of range.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    rfc3339(u64::try_from(now).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_444_047), "2026-11-23T14:27:27Z");
        assert_eq!(rfc3339(u64::MAX), "");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
