//! The two clocks the spawner uses: wall-clock time for what clients see (`*_ns` fields), and
//! boot time for deadlines, which no clock adjustment moves and which stays meaningful across
//! a spawner restart (jobs never survive a reboot).

use std::time::{SystemTime, UNIX_EPOCH};

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Nanoseconds since boot, including suspend (`CLOCK_BOOTTIME`).
pub fn boot_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    })
}

/// `now + ms`, in boot-time nanoseconds.
pub fn boot_deadline(ms: u64) -> u64 {
    boot_ns().saturating_add(ms.saturating_mul(1_000_000))
}

/// Milliseconds from now until `deadline_ns` (boot time), 0 if already past.
pub fn ms_until(deadline_ns: u64) -> u64 {
    deadline_ns.saturating_sub(boot_ns()).div_ceil(1_000_000)
}
