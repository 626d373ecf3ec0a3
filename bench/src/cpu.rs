//! CPU time spent by each daemon (and by the children it reaped: the spawner's shims and, through
//! them, the jobs) over a stretch of work, from `/proc/PID/stat`. Unlike wall-clock figures it
//! barely moves with the load of other processes on a shared machine, so it says where the
//! time goes and what a given throughput costs.

use std::collections::BTreeMap;

use crate::system::BenchSystem;

/// Clock ticks per second of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU ticks of one process: its own, and its reaped children's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ticks {
    own: u64,
    children: u64,
}

fn ticks(pid: i32) -> Option<Ticks> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime+stime and cutime+cstime (fields 14-17 of `stat`, counted after the command name).
fn parse_stat(stat: &str) -> Option<Ticks> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4).then(|| Ticks {
        own: f[0] + f[1],
        children: f[2] + f[3],
    })
}

/// The daemons' CPU at one moment, and this program's own (the client side).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    daemons: BTreeMap<String, Ticks>,
    client: Ticks,
}

pub fn snapshot(sys: &BenchSystem) -> Snapshot {
    Snapshot {
        daemons: sys
            .daemons()
            .into_iter()
            .filter_map(|(name, pid)| Some((name, ticks(pid)?)))
            .collect(),
        client: ticks(std::process::id() as i32).unwrap_or_default(),
    }
}

/// Milliseconds of CPU per unit of work between two snapshots, one entry per process, as
/// `name → ms`; the spawner's reaped children (shims and jobs) are their own entry.
pub fn per_unit(before: &Snapshot, after: &Snapshot, units: f64) -> Vec<(String, f64)> {
    let ms = |t: u64| t as f64 * 1e3 / TICKS_PER_SEC / units;
    let mut out = Vec::new();
    for (name, a) in &after.daemons {
        let b = before.daemons.get(name).copied().unwrap_or_default();
        out.push((name.clone(), ms(a.own.saturating_sub(b.own))));
        if name == "joblet-spawner" {
            out.push((
                "shims and jobs (reaped by the spawner)".into(),
                ms(a.children.saturating_sub(b.children)),
            ));
        }
    }
    out.push((
        "this client".into(),
        ms(after.client.own.saturating_sub(before.client.own)),
    ));
    out
}

/// `name a.b ms, …; total t ms`.
pub fn describe(per: &[(String, f64)], unit: &str) -> String {
    let total: f64 = per
        .iter()
        .filter(|(n, _)| n != "this client")
        .map(|(_, v)| v)
        .sum();
    let parts: Vec<String> = per.iter().map(|(n, v)| format!("{n} {v:.2}")).collect();
    format!(
        "CPU ms per {unit}: {}; server side in all {total:.2}",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        let stat = "7 (a b) S 1 7 7 0 -1 0 10 0 0 0 12 3 40 5 20 0 1 0";
        assert_eq!(
            parse_stat(stat),
            Some(Ticks {
                own: 15,
                children: 45
            })
        );
        assert_eq!(parse_stat("7 (x) S 1"), None);
    }

    #[test]
    fn per_unit_splits_the_spawner_children() {
        let t = |own, children| Ticks { own, children };
        let before = Snapshot {
            daemons: [("joblet-spawner".to_owned(), t(100, 50))].into(),
            client: t(10, 0),
        };
        let after = Snapshot {
            daemons: [("joblet-spawner".to_owned(), t(110, 90))].into(),
            client: t(20, 0),
        };
        let per = per_unit(&before, &after, 10.0);
        assert_eq!(per[0], ("joblet-spawner".into(), 10.0));
        assert_eq!(per[1].1, 40.0);
        assert_eq!(per[2], ("this client".into(), 10.0));
        assert!(describe(&per, "job").contains("server side in all 50.00"));
    }

    #[test]
    fn own_process_has_ticks() {
        assert!(ticks(std::process::id() as i32).is_some());
    }
}
