//! Disk I/O: `/proc/diskstats` for the host's whole disks, with rates between two readings.

use std::collections::BTreeSet;

use joblet_api_proto::{DiskIoMetrics, IoMetrics};

use super::cpu::round2;
use super::memory::to_i64;

/// `/proc/diskstats` counts in 512-byte sectors whatever the device's real sector size.
const SECTOR: u64 = 512;

/// One device's cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStat {
    pub name: String,
    pub reads: u64,
    pub read_sectors: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub write_sectors: u64,
    pub write_ms: u64,
    /// Time the device had I/O in flight.
    pub io_ms: u64,
}

/// Parses diskstats; malformed lines are skipped.
pub fn parse_diskstats(text: &str) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            Some(DiskStat {
                name: f[2].to_owned(),
                reads: n(3)?,
                read_sectors: n(5)?,
                read_ms: n(6)?,
                writes: n(7)?,
                write_sectors: n(9)?,
                write_ms: n(10)?,
                io_ms: n(12)?,
            })
        })
        .collect()
}

/// Whether a device is one of the host's disks: a whole disk (listed in `/sys/block`, where
/// `/` in a name is written `!`), and not a loop or RAM device. Without that list, every
/// device but loop and RAM devices counts.
pub fn is_host_disk(name: &str, whole_disks: Option<&BTreeSet<String>>) -> bool {
    if name.starts_with("loop") || name.starts_with("ram") {
        return false;
    }
    whole_disks.is_none_or(|w| w.contains(&name.replace('/', "!")))
}

/// The public I/O message; rates are per second since `prev` (zero without it).
pub fn metrics(
    prev: Option<&[DiskStat]>,
    cur: &[DiskStat],
    elapsed_secs: f64,
    whole_disks: Option<&BTreeSet<String>>,
) -> IoMetrics {
    let mut out = IoMetrics::default();
    let (mut read_delta, mut write_delta) = (0u64, 0u64);
    for d in cur.iter().filter(|d| is_host_disk(&d.name, whole_disks)) {
        let before = prev.and_then(|p| p.iter().find(|p| p.name == d.name));
        if let Some(b) = before {
            read_delta += (d.read_sectors.saturating_sub(b.read_sectors)) * SECTOR;
            write_delta += (d.write_sectors.saturating_sub(b.write_sectors)) * SECTOR;
        }
        let utilization = match before {
            Some(b) if elapsed_secs > 0.0 => {
                let busy = d.io_ms.saturating_sub(b.io_ms) as f64;
                round2((busy / (elapsed_secs * 1000.0) * 100.0).min(100.0))
            }
            _ => 0.0,
        };
        out.total_reads = out.total_reads.saturating_add(to_i64(d.reads));
        out.total_writes = out.total_writes.saturating_add(to_i64(d.writes));
        out.read_bytes = out
            .read_bytes
            .saturating_add(to_i64(d.read_sectors.saturating_mul(SECTOR)));
        out.write_bytes = out
            .write_bytes
            .saturating_add(to_i64(d.write_sectors.saturating_mul(SECTOR)));
        out.disk_io.push(DiskIoMetrics {
            device: d.name.clone(),
            reads_completed: to_i64(d.reads),
            writes_completed: to_i64(d.writes),
            read_bytes: to_i64(d.read_sectors.saturating_mul(SECTOR)),
            write_bytes: to_i64(d.write_sectors.saturating_mul(SECTOR)),
            read_time: to_i64(d.read_ms),
            write_time: to_i64(d.write_ms),
            io_time: to_i64(d.io_ms),
            utilization,
        });
    }
    if prev.is_some() && elapsed_secs > 0.0 {
        out.read_rate = round2(read_delta as f64 / elapsed_secs);
        out.write_rate = round2(write_delta as f64 / elapsed_secs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_captured_diskstats() {
        let all = parse_diskstats(include_str!("testdata/diskstats"));
        let vda = all.iter().find(|d| d.name == "vda").unwrap();
        assert_eq!(vda.reads, 1141313);
        assert_eq!(vda.read_sectors, 68437730);
        assert_eq!(vda.write_sectors, 57330456);
        assert_eq!(vda.io_ms, 114976);
        let w = whole(&["loop0", "vda", "zram0"]);
        let m = metrics(None, &all, 1.0, Some(&w));
        let devices: Vec<&str> = m.disk_io.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(devices, ["vda", "zram0"]);
        assert_eq!(m.read_bytes, 68437730 * 512);
        assert_eq!((m.read_rate, m.write_rate), (0.0, 0.0));
    }

    #[test]
    fn rates_and_utilisation_between_readings() {
        let a = parse_diskstats(
            "8 0 sda 100 0 2000 50 10 0 400 20 0 1000 70\n\
             8 1 sda1 100 0 2000 50 10 0 400 20 0 1000 70\n\
             259 0 nvme0n1 1 0 8 1 1 0 8 1 0 1 2 0 0 0 0\n",
        );
        let b = parse_diskstats(
            "8 0 sda 200 0 6000 80 20 0 1400 40 0 1500 120\n\
             8 1 sda1 200 0 6000 80 20 0 1400 40 0 1500 120\n\
             259 0 nvme0n1 1 0 8 1 1 0 8 1 0 1 2 0 0 0 0\n",
        );
        let w = whole(&["sda", "nvme0n1"]);
        let m = metrics(Some(&a), &b, 2.0, Some(&w));
        assert_eq!(m.disk_io.len(), 2, "partitions are not counted twice");
        assert_eq!(m.read_rate, (4000.0 * 512.0) / 2.0);
        assert_eq!(m.write_rate, (1000.0 * 512.0) / 2.0);
        assert_eq!(m.total_reads, 201);
        assert_eq!(m.disk_io[0].utilization, 25.0);
        assert_eq!(m.disk_io[0].read_time, 80);
        assert_eq!(m.disk_io[1].utilization, 0.0);
    }

    #[test]
    fn device_selection() {
        let w = whole(&["cciss!c0d0", "sda"]);
        assert!(is_host_disk("cciss/c0d0", Some(&w)));
        assert!(!is_host_disk("sda1", Some(&w)));
        assert!(!is_host_disk("loop3", None));
        assert!(!is_host_disk("ram0", None));
        assert!(is_host_disk("sda1", None));
    }

    #[test]
    fn short_or_garbage_lines_are_skipped() {
        assert!(parse_diskstats("8 0 sda 1 2 3\n8 0 sdb x 0 0 0 0 0 0 0 0 0 0\n").is_empty());
    }
}
