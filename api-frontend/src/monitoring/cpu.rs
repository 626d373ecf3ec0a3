//! CPU: time shares from two readings of `/proc/stat`, and the load average.

use joblet_api_proto::CpuMetrics;

use super::source::CollectError;

const STAT: &str = "/proc/stat";
const LOADAVG: &str = "/proc/loadavg";

/// Cumulative CPU time by kind, in clock ticks (guest time is already inside `user`/`nice`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// Parses the numbers after a `cpu`/`cpuN` label. Kernels before 2.6.11 lack `steal`.
    fn parse(fields: &[&str]) -> Option<CpuTimes> {
        let n = |i: usize| -> Option<u64> {
            match fields.get(i) {
                Some(f) => f.parse().ok(),
                None => Some(0),
            }
        };
        if fields.len() < 4 {
            return None;
        }
        Some(CpuTimes {
            user: n(0)?,
            nice: n(1)?,
            system: n(2)?,
            idle: n(3)?,
            iowait: n(4)?,
            irq: n(5)?,
            softirq: n(6)?,
            steal: n(7)?,
        })
    }
}

/// One reading of `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStat {
    pub total: CpuTimes,
    /// Online CPUs, in the order the kernel lists them.
    pub cores: Vec<CpuTimes>,
    /// Boot time, seconds since the Unix epoch (`btime`).
    pub boot_time: Option<u64>,
}

pub fn parse_stat(text: &str) -> Result<CpuStat, CollectError> {
    let mut stat = CpuStat::default();
    let mut saw_total = false;
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(label) = words.next() else { continue };
        let fields: Vec<&str> = words.collect();
        if label == "cpu" {
            stat.total = CpuTimes::parse(&fields)
                .ok_or_else(|| CollectError::parse(STAT, "malformed `cpu` line"))?;
            saw_total = true;
        } else if label.starts_with("cpu") && label[3..].bytes().all(|b| b.is_ascii_digit()) {
            let times = CpuTimes::parse(&fields)
                .ok_or_else(|| CollectError::parse(STAT, format!("malformed `{label}` line")))?;
            stat.cores.push(times);
        } else if label == "btime" {
            stat.boot_time = fields.first().and_then(|f| f.parse().ok());
        }
    }
    if !saw_total {
        return Err(CollectError::parse(STAT, "no `cpu` line"));
    }
    Ok(stat)
}

/// How the CPU time between two readings was spent, in percent of that time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuShares {
    pub usage: f64,
    pub user: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub steal: f64,
}

pub fn shares(prev: &CpuTimes, cur: &CpuTimes) -> CpuShares {
    let total = cur.total().saturating_sub(prev.total());
    if total == 0 {
        return CpuShares::default();
    }
    let pct = |a: u64, b: u64| (a.saturating_sub(b)) as f64 * 100.0 / total as f64;
    let idle = pct(cur.idle, prev.idle);
    let iowait = pct(cur.iowait, prev.iowait);
    CpuShares {
        usage: (100.0 - idle - iowait).clamp(0.0, 100.0),
        user: pct(cur.user + cur.nice, prev.user + prev.nice),
        system: pct(
            cur.system + cur.irq + cur.softirq,
            prev.system + prev.irq + prev.softirq,
        ),
        idle,
        iowait,
        steal: pct(cur.steal, prev.steal),
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], CollectError> {
    let mut it = text.split_ascii_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok([a, b, c]),
        _ => Err(CollectError::parse(LOADAVG, "expected three numbers")),
    }
}

/// The public CPU message from two readings.
pub fn metrics(prev: &CpuStat, cur: &CpuStat, load: Option<[f64; 3]>) -> CpuMetrics {
    let all = shares(&prev.total, &cur.total);
    CpuMetrics {
        cores: i32::try_from(cur.cores.len()).unwrap_or(i32::MAX),
        usage_percent: round2(all.usage),
        user_time: round2(all.user),
        system_time: round2(all.system),
        idle_time: round2(all.idle),
        io_wait_time: round2(all.iowait),
        steal_time: round2(all.steal),
        load_average: load.map(|l| l.to_vec()).unwrap_or_default(),
        per_core_usage: cur
            .cores
            .iter()
            .zip(
                prev.cores
                    .iter()
                    .chain(std::iter::repeat(&CpuTimes::default())),
            )
            .map(|(c, p)| round2(shares(p, c).usage))
            .collect(),
    }
}

/// Two decimals are all a person reads, and they keep JSON output short.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_captured_stat() {
        let s = parse_stat(include_str!("testdata/stat.1")).unwrap();
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.total.user, 437388);
        assert_eq!(s.total.nice, 2);
        assert_eq!(s.total.steal, 2742);
        assert_eq!(s.cores[1].softirq, 793);
        assert_eq!(s.boot_time, Some(1795444047));
    }

    #[test]
    fn shares_between_two_captured_readings_add_up() {
        let a = parse_stat(include_str!("testdata/stat.1")).unwrap();
        let b = parse_stat(include_str!("testdata/stat.2")).unwrap();
        let m = metrics(&a, &b, Some([1.0, 2.0, 3.0]));
        assert_eq!(m.cores, 2);
        assert_eq!(m.per_core_usage.len(), 2);
        let sum = m.user_time + m.system_time + m.idle_time + m.io_wait_time + m.steal_time;
        assert!((sum - 100.0).abs() < 0.1, "{m:?}");
        assert!((0.0..=100.0).contains(&m.usage_percent));
        assert_eq!(m.load_average, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn shares_are_exact_on_known_deltas() {
        let a =
            parse_stat("cpu 100 0 100 700 100 0 0 0 0 0\ncpu0 100 0 100 700 100 0 0 0\n").unwrap();
        let b = parse_stat(
            "cpu 150 10 120 800 110 5 5 0 0 0\ncpu0 150 10 120 800 110 5 5 0\nbtime 5\n",
        )
        .unwrap();
        // deltas: user 50 nice 10 system 20 idle 100 iowait 10 irq 5 softirq 5 = 200 ticks
        let sh = shares(&a.total, &b.total);
        assert_eq!(sh.user, 30.0);
        assert_eq!(sh.system, 15.0);
        assert_eq!(sh.idle, 50.0);
        assert_eq!(sh.iowait, 5.0);
        assert_eq!(sh.usage, 45.0);
        assert_eq!(metrics(&a, &b, None).per_core_usage, vec![45.0]);
    }

    #[test]
    fn no_elapsed_time_and_counter_resets_give_zeros_not_nonsense() {
        let a = parse_stat("cpu 100 0 100 700 100 0 0 0\n").unwrap();
        assert_eq!(shares(&a.total, &a.total), CpuShares::default());
        let reset = parse_stat("cpu 1 0 1 7 1 0 0 0\n").unwrap();
        let sh = shares(&a.total, &reset.total);
        assert_eq!(sh, CpuShares::default());
    }

    #[test]
    fn old_kernels_and_garbage() {
        let s = parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(s.total.iowait, 0);
        assert!(parse_stat("intr 1 2 3\n").is_err());
        assert!(parse_stat("cpu 1 x 3 4 5\n").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
        // A label that only starts with "cpu" is not a core.
        let s = parse_stat("cpu 1 2 3 4\ncpufreq 9 9 9 9\n").unwrap();
        assert!(s.cores.is_empty());
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg(include_str!("testdata/loadavg"))
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 1/100 42\n").unwrap(),
            [0.5, 1.25, 2.0]
        );
        assert!(parse_loadavg("0.5 x\n").is_err());
        assert!(parse_loadavg("").is_err());
    }
}
