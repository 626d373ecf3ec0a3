//! Byte counts for people: binary units (KiB = 1024 bytes), one decimal.

const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `512 B`, `1.5 KiB`, `12.3 MiB`; a negative count (a server bug) shows as `0 B`.
pub fn human(bytes: i64) -> String {
    human_u64(u64::try_from(bytes).unwrap_or(0))
}

pub fn human_u64(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A rate in bytes per second: `1.2 MiB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    let whole = if bytes_per_second.is_finite() && bytes_per_second > 0.0 {
        bytes_per_second as u64
    } else {
        0
    };
    format!("{}/s", human_u64(whole))
}

/// `done` and `total` in the unit that suits `total`: `12.3/29.1 MiB`.
pub fn fraction(done: u64, total: u64) -> String {
    let (divisor, unit) = match total {
        t if t < 1 << 20 => (1u64 << 10, "KiB"),
        t if t < 1 << 30 => (1 << 20, "MiB"),
        _ => (1 << 30, "GiB"),
    };
    let scale = |n: u64| n as f64 / divisor as f64;
    format!("{:.1}/{:.1} {unit}", scale(done), scale(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_use_binary_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(12_900_000), "12.3 MiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
        assert_eq!(human(-5), "0 B");
        assert_eq!(human_u64(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn rates_and_fractions() {
        assert_eq!(rate(2048.0), "2.0 KiB/s");
        assert_eq!(rate(f64::NAN), "0 B/s");
        assert_eq!(rate(-1.0), "0 B/s");
        assert_eq!(fraction(12_897_485, 30_513_561), "12.3/29.1 MiB");
        assert_eq!(fraction(512, 1000), "0.5/1.0 KiB");
        assert_eq!(fraction(1 << 30, 2 << 30), "1.0/2.0 GiB");
    }
}
