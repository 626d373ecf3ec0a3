//! Parsers for the cgroup files a sample is made of (v1 and v2). Pure functions over the
//! bytes the kernel wrote, so they are tested on captured files.

use std::str;

/// Why a cgroup file's content could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not ASCII text")]
    NotText,
    #[error("expected one unsigned number, found {0:?}")]
    NotANumber(String),
    #[error("no {0} line")]
    MissingKey(&'static str),
    #[error("line {0:?} is not in the expected format")]
    BadLine(String),
}

/// Bytes read and written, summed over every device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoBytes {
    pub read: u64,
    pub write: u64,
}

/// The v1 memory limit at and above which a cgroup is unlimited. The kernel reports "no
/// limit" as its page-counter maximum times the page size (`0x7FFFFFFFFFFFF000` with 4 KiB
/// pages, less with larger pages), never a value a machine could hold; 2^62 bytes is beyond
/// any real limit and below every page size's maximum.
pub const V1_UNLIMITED_FROM: u64 = 1 << 62;

fn text(bytes: &[u8]) -> Result<&str, ParseError> {
    str::from_utf8(bytes).map_err(|_| ParseError::NotText)
}

fn number(s: &str) -> Result<u64, ParseError> {
    s.parse::<u64>()
        .map_err(|_| ParseError::NotANumber(s.chars().take(40).collect()))
}

/// A file holding one number (`memory.current`, `pids.current`, `cpuacct.usage`, …).
pub fn single_u64(bytes: &[u8]) -> Result<u64, ParseError> {
    number(text(bytes)?.trim())
}

/// v2 `memory.max`: a number of bytes, or `max` for no limit (reported as 0).
pub fn memory_max(bytes: &[u8]) -> Result<u64, ParseError> {
    match text(bytes)?.trim() {
        "max" => Ok(0),
        n => number(n),
    }
}

/// v1 `memory.limit_in_bytes`: the "unlimited" huge value is reported as 0.
pub fn memory_limit_v1(bytes: &[u8]) -> Result<u64, ParseError> {
    let limit = single_u64(bytes)?;
    Ok(if limit >= V1_UNLIMITED_FROM { 0 } else { limit })
}

/// v2 `cpu.stat`: `usage_usec`, converted to nanoseconds.
pub fn cpu_stat_usage_ns(bytes: &[u8]) -> Result<u64, ParseError> {
    for line in text(bytes)?.lines() {
        if let Some(("usage_usec", v)) = line.split_once(' ') {
            return Ok(number(v.trim())?.saturating_mul(1000));
        }
    }
    Err(ParseError::MissingKey("usage_usec"))
}

/// v2 `io.stat`: one line per device, `MAJ:MIN rbytes=N wbytes=N rios=N …`; sums `rbytes`
/// and `wbytes`. Keys this code does not know are skipped (the kernel adds some with
/// features such as `io.cost`).
pub fn io_stat(bytes: &[u8]) -> Result<IoBytes, ParseError> {
    let mut sum = IoBytes::default();
    for line in text(bytes)?.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let device = fields.next().unwrap_or_default();
        if !is_device(device) {
            return Err(ParseError::BadLine(line.chars().take(80).collect()));
        }
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(ParseError::BadLine(line.chars().take(80).collect()));
            };
            match key {
                "rbytes" => sum.read = sum.read.saturating_add(number(value)?),
                "wbytes" => sum.write = sum.write.saturating_add(number(value)?),
                _ => {}
            }
        }
    }
    Ok(sum)
}

/// v1 `blkio.throttle.io_service_bytes[_recursive]`: `MAJ:MIN Op N` lines (Op one of Read,
/// Write, Sync, Async, Discard, Total) and a closing `Total N`; sums Read and Write.
pub fn blkio_service_bytes(bytes: &[u8]) -> Result<IoBytes, ParseError> {
    let mut sum = IoBytes::default();
    for line in text(bytes)?.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Total", n] => {
                number(n)?;
            }
            [device, op, n] if is_device(device) => {
                let n = number(n)?;
                match *op {
                    "Read" => sum.read = sum.read.saturating_add(n),
                    "Write" => sum.write = sum.write.saturating_add(n),
                    _ => {}
                }
            }
            _ => return Err(ParseError::BadLine(line.chars().take(80).collect())),
        }
    }
    Ok(sum)
}

/// `MAJ:MIN`, both decimal.
fn is_device(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    matches!(s.split_once(':'), Some((maj, min)) if digits(maj) && digits(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($path:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/cgroup/",
                $path
            ))
        };
    }

    #[test]
    fn v2_files_from_the_guest() {
        assert_eq!(cpu_stat_usage_ns(fixture!("v2/cpu.stat")), Ok(772_591_000));
        assert_eq!(single_u64(fixture!("v2/memory.current")), Ok(4_694_016));
        assert_eq!(memory_max(fixture!("v2/memory.max")), Ok(64 << 20));
        assert_eq!(memory_max(fixture!("v2/memory.max.unlimited")), Ok(0));
        assert_eq!(single_u64(fixture!("v2/pids.current")), Ok(1));
        assert_eq!(
            io_stat(fixture!("v2/io.stat")),
            Ok(IoBytes {
                read: 2 << 20,
                write: 4 << 20
            })
        );
        assert_eq!(
            io_stat(fixture!("v2/io.stat.two")),
            Ok(IoBytes {
                read: 409_600,
                write: 3_145_728 + 1_048_576
            })
        );
        assert_eq!(
            io_stat(fixture!("v2/io.stat.empty")),
            Ok(IoBytes::default())
        );
    }

    #[test]
    fn v1_files_from_this_host() {
        assert_eq!(single_u64(fixture!("v1/cpuacct.usage")), Ok(507_863_168));
        assert_eq!(
            single_u64(fixture!("v1/memory.usage_in_bytes")),
            Ok(606_208)
        );
        assert_eq!(
            memory_limit_v1(fixture!("v1/memory.limit_in_bytes")),
            Ok(64 << 20)
        );
        assert_eq!(
            memory_limit_v1(fixture!("v1/memory.limit_in_bytes.unlimited")),
            Ok(0)
        );
        assert_eq!(single_u64(fixture!("v1/pids.current")), Ok(0));
        assert_eq!(
            blkio_service_bytes(fixture!("v1/blkio.throttle.io_service_bytes")),
            Ok(IoBytes {
                read: 2 << 20,
                write: 4 << 20
            })
        );
        assert_eq!(
            blkio_service_bytes(fixture!("v1/blkio.throttle.io_service_bytes.idle")),
            Ok(IoBytes::default())
        );
        assert_eq!(
            blkio_service_bytes(fixture!("v1/blkio.throttle.io_service_bytes.three-devices")),
            Ok(IoBytes {
                read: 215_449_600 + 87_040 + 3_525_632,
                write: 353_665_024 + 45_056 + 14_458_880,
            })
        );
    }

    #[test]
    fn malformed_content_is_an_error_naming_what_is_wrong() {
        assert_eq!(single_u64(b""), Err(ParseError::NotANumber(String::new())));
        assert!(matches!(
            single_u64(b"-1\n"),
            Err(ParseError::NotANumber(_))
        ));
        assert!(matches!(
            single_u64(b"99999999999999999999999\n"),
            Err(ParseError::NotANumber(_))
        ));
        assert_eq!(single_u64(b"\xff\xfe"), Err(ParseError::NotText));
        assert_eq!(
            cpu_stat_usage_ns(b"user_usec 5\n"),
            Err(ParseError::MissingKey("usage_usec"))
        );
        assert!(matches!(
            io_stat(b"7:0 rbytes=x wbytes=1\n"),
            Err(ParseError::NotANumber(_))
        ));
        assert!(matches!(
            io_stat(b"sda rbytes=1\n"),
            Err(ParseError::BadLine(_))
        ));
        assert!(matches!(
            blkio_service_bytes(b"7:0 Read\n"),
            Err(ParseError::BadLine(_))
        ));
        assert!(matches!(
            memory_max(b"unlimited\n"),
            Err(ParseError::NotANumber(_))
        ));
    }

    #[test]
    fn sums_saturate_instead_of_overflowing() {
        let huge = format!(
            "1:0 rbytes={m} wbytes=0\n2:0 rbytes={m} wbytes=0\n",
            m = u64::MAX
        );
        assert_eq!(io_stat(huge.as_bytes()).map(|s| s.read), Ok(u64::MAX));
        let usec = format!("usage_usec {}\n", u64::MAX / 10);
        assert_eq!(cpu_stat_usage_ns(usec.as_bytes()), Ok(u64::MAX));
    }

    #[test]
    fn limits_just_below_the_unlimited_threshold_are_kept() {
        let just_below = format!("{}\n", V1_UNLIMITED_FROM - 4096);
        assert_eq!(
            memory_limit_v1(just_below.as_bytes()),
            Ok(V1_UNLIMITED_FROM - 4096)
        );
        // 64 KiB pages give a smaller "unlimited" value; it is still unlimited.
        assert_eq!(memory_limit_v1(b"9223372036854710272\n"), Ok(0));
    }
}
