//! Memory of a process from `/proc/PID/smaps_rollup`: RSS (every page it maps, shared or
//! not) and PSS (each shared page divided among its sharers, so sums over processes are
//! honest — the figure to use for the per-job shims, which share the spawner's pages).

use std::ops::AddAssign;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    pub rss_kb: u64,
    pub pss_kb: u64,
}

impl AddAssign for Mem {
    fn add_assign(&mut self, o: Mem) {
        self.rss_kb += o.rss_kb;
        self.pss_kb += o.pss_kb;
    }
}

/// `None` when the process is gone or its file unreadable.
pub fn of(pid: i32) -> Option<Mem> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// The sum over `pids` (processes that vanished count as zero).
pub fn sum(pids: impl IntoIterator<Item = i32>) -> Mem {
    let mut total = Mem::default();
    for p in pids {
        total += of(p).unwrap_or_default();
    }
    total
}

fn parse(rollup: &str) -> Option<Mem> {
    let field = |name: &str| {
        rollup.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Mem {
        rss_kb: field("Rss")?,
        pss_kb: field("Pss")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rollup() {
        let text = "55d0-7ffc ---p 00000000 00:00 0  [rollup]\nRss:                3072 kB\n\
                    Pss:                1100 kB\nPss_Dirty:           800 kB\n";
        assert_eq!(
            parse(text),
            Some(Mem {
                rss_kb: 3072,
                pss_kb: 1100
            })
        );
        assert_eq!(parse("Rss: x kB"), None);
    }

    #[test]
    fn own_process_has_memory_and_gone_ones_count_zero() {
        let me = of(std::process::id() as i32).unwrap();
        assert!(me.rss_kb > 0 && me.pss_kb > 0 && me.pss_kb <= me.rss_kb);
        assert_eq!(sum([i32::MAX]), Mem::default());
    }
}
