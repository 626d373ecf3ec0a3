//! Memory: `/proc/meminfo`.

use std::collections::HashMap;

use joblet_api_proto::MemoryMetrics;

use super::cpu::round2;
use super::source::CollectError;

const MEMINFO: &str = "/proc/meminfo";

/// The `Key: N kB` lines, in bytes.
fn fields(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut words = rest.split_ascii_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            let scale = match words.next() {
                Some("kB") => 1024,
                None => 1,
                Some(_) => return None,
            };
            Some((key.trim(), n.saturating_mul(scale)))
        })
        .collect()
}

pub fn parse_meminfo(text: &str) -> Result<MemoryMetrics, CollectError> {
    let f = fields(text);
    let get = |k: &str| f.get(k).copied();
    let total = get("MemTotal").ok_or_else(|| CollectError::parse(MEMINFO, "no MemTotal"))?;
    let free = get("MemFree").unwrap_or(0);
    let buffers = get("Buffers").unwrap_or(0);
    // Reclaimable slab is page cache in all but name, as `free` counts it.
    let cached = get("Cached").unwrap_or(0) + get("SReclaimable").unwrap_or(0);
    // Kernels before 3.14 have no MemAvailable; estimate it as older tools did.
    let available = get("MemAvailable").unwrap_or(free + buffers + cached);
    // "Used" is what cannot be given back on demand, as `free` and the kernel define it.
    let used = total.saturating_sub(available);
    let swap_total = get("SwapTotal").unwrap_or(0);
    let swap_free = get("SwapFree").unwrap_or(0);
    Ok(MemoryMetrics {
        total_bytes: to_i64(total),
        used_bytes: to_i64(used),
        free_bytes: to_i64(free),
        available_bytes: to_i64(available),
        usage_percent: percent(used, total),
        cached_bytes: to_i64(cached),
        buffered_bytes: to_i64(buffers),
        swap_total: to_i64(swap_total),
        swap_used: to_i64(swap_total.saturating_sub(swap_free)),
        swap_free: to_i64(swap_free),
    })
}

/// MemTotal in bytes, for process memory shares.
pub fn total_bytes(text: &str) -> Option<u64> {
    fields(text).get("MemTotal").copied()
}

pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round2(part as f64 * 100.0 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_captured_meminfo() {
        let text = include_str!("testdata/meminfo");
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total_bytes, 24684084 * 1024);
        assert_eq!(m.available_bytes, 23599832 * 1024);
        assert_eq!(m.used_bytes, m.total_bytes - m.available_bytes);
        assert_eq!(m.buffered_bytes, 52156 * 1024);
        assert!(m.cached_bytes >= 2853996 * 1024);
        assert_eq!((m.swap_total, m.swap_used, m.swap_free), (0, 0, 0));
        assert!(m.usage_percent > 0.0 && m.usage_percent < 100.0);
        assert_eq!(total_bytes(text), Some(24684084 * 1024));
    }

    #[test]
    fn exact_values_and_old_kernels() {
        let m = parse_meminfo(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n\
             SwapTotal: 400 kB\nSwapFree: 100 kB\nHugePages_Total: 0\n",
        )
        .unwrap();
        assert_eq!(m.available_bytes, 400 * 1024);
        assert_eq!(m.used_bytes, 600 * 1024);
        assert_eq!(m.usage_percent, 60.0);
        assert_eq!(m.swap_used, 300 * 1024);
    }

    #[test]
    fn garbage_is_refused_or_ignored() {
        assert!(parse_meminfo("").is_err());
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
        // Lines in an unknown unit are ignored rather than misread.
        assert!(parse_meminfo("MemTotal: 1 MB\n").is_err());
        let m = parse_meminfo("MemTotal: 10 kB\nnonsense\nMemFree: x kB\n").unwrap();
        assert_eq!(m.free_bytes, 0);
    }
}
