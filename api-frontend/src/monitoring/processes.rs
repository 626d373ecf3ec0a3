//! Processes: counts by state and the busiest processes, from `/proc/[pid]/stat` read twice.

use std::collections::HashMap;

use joblet_api_proto::{ProcessInfo, ProcessMetrics};

use super::cpu::round2;
use super::memory::{percent, to_i64};
use super::source::Source;
use super::time::rfc3339;

/// How many processes each top list holds.
pub const TOP: usize = 10;
/// Longest command line shown.
const MAX_COMMAND: usize = 1024;

/// The fields of `/proc/[pid]/stat` this module uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub state: char,
    /// User plus system CPU time, clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Start time, clock ticks after boot; with the pid it tells a reused pid apart.
    pub start_ticks: u64,
    pub rss_pages: u64,
}

pub fn parse_pid_stat(text: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    if f.len() < 22 {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    Some(ProcStat {
        pid,
        ppid: f[1].parse().ok()?,
        comm,
        state: f[0].chars().next()?,
        cpu_ticks: n(11)?.saturating_add(n(12)?),
        threads: n(17)?,
        start_ticks: n(19)?,
        // Negative only for odd kernel threads; treat as nothing resident.
        rss_pages: f[21].parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Every process at one moment.
#[derive(Debug, Clone, Default)]
pub struct ProcessTable {
    pub procs: HashMap<i32, ProcStat>,
}

impl ProcessTable {
    /// Reads every `/proc/[pid]/stat`; processes that exit meanwhile are skipped.
    pub fn read(source: &Source) -> ProcessTable {
        let mut procs = HashMap::new();
        let Ok(dir) = std::fs::read_dir(&source.proc) else {
            return ProcessTable { procs };
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(text) = source.proc_file(&format!("{pid}/stat"))
                && let Some(stat) = parse_pid_stat(&text)
            {
                procs.insert(pid, stat);
            }
        }
        ProcessTable { procs }
    }
}

/// Constants needed to turn ticks and pages into seconds, bytes and times.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub ticks_per_second: u64,
    pub page_size: u64,
    pub mem_total: u64,
    /// Seconds since the epoch.
    pub boot_time: u64,
}

impl Clock {
    pub fn system(mem_total: u64, boot_time: u64) -> Clock {
        use nix::unistd::{SysconfVar, sysconf};
        let get = |v, default: u64| {
            sysconf(v)
                .ok()
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        Clock {
            ticks_per_second: get(SysconfVar::CLK_TCK, 100),
            page_size: get(SysconfVar::PAGE_SIZE, 4096),
            mem_total,
            boot_time,
        }
    }
}

pub fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk-sleep",
        'I' => "idle",
        'T' => "stopped",
        't' => "tracing-stop",
        'Z' => "zombie",
        'X' | 'x' => "dead",
        'P' => "parked",
        'W' => "waking",
        _ => "unknown",
    }
}

/// The public process message. CPU shares are in percent of one core since `prev` (zero
/// without it); `command` gives a process's command line (None if it is gone).
pub fn metrics(
    prev: Option<&ProcessTable>,
    cur: &ProcessTable,
    elapsed_secs: f64,
    clock: &Clock,
    command: &dyn Fn(&ProcStat) -> Option<String>,
) -> ProcessMetrics {
    let mut out = ProcessMetrics::default();
    let mut rows: Vec<(&ProcStat, f64)> = Vec::with_capacity(cur.procs.len());
    for p in cur.procs.values() {
        out.total_processes += 1;
        match p.state {
            'R' => out.running_processes += 1,
            'S' | 'D' | 'I' => out.sleeping_processes += 1,
            'T' | 't' => out.stopped_processes += 1,
            'Z' => out.zombie_processes += 1,
            _ => {}
        }
        out.total_threads = out
            .total_threads
            .saturating_add(i32::try_from(p.threads).unwrap_or(i32::MAX));
        let cpu = match prev.and_then(|t| t.procs.get(&p.pid)) {
            Some(before) if before.start_ticks == p.start_ticks && elapsed_secs > 0.0 => {
                let ticks = p.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
                ticks / clock.ticks_per_second as f64 / elapsed_secs * 100.0
            }
            _ => 0.0,
        };
        rows.push((p, cpu));
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.pid.cmp(&b.0.pid)));
    out.top_by_cpu = rows
        .iter()
        .take(TOP)
        .map(|(p, cpu)| info(p, *cpu, clock, command))
        .collect();
    rows.sort_by(|a, b| {
        b.0.rss_pages
            .cmp(&a.0.rss_pages)
            .then(a.0.pid.cmp(&b.0.pid))
    });
    out.top_by_memory = rows
        .iter()
        .take(TOP)
        .map(|(p, cpu)| info(p, *cpu, clock, command))
        .collect();
    out
}

fn info(
    p: &ProcStat,
    cpu: f64,
    clock: &Clock,
    command: &dyn Fn(&ProcStat) -> Option<String>,
) -> ProcessInfo {
    let rss = p.rss_pages.saturating_mul(clock.page_size);
    let started = clock.boot_time + p.start_ticks / clock.ticks_per_second;
    ProcessInfo {
        pid: p.pid,
        ppid: p.ppid,
        name: p.comm.clone(),
        command: command(p).unwrap_or_else(|| format!("[{}]", p.comm)),
        cpu_percent: round2(cpu),
        memory_percent: percent(rss, clock.mem_total),
        memory_bytes: to_i64(rss),
        status: state_name(p.state).to_owned(),
        start_time: rfc3339(started),
    }
}

/// A command line from `/proc/[pid]/cmdline` (NUL-separated arguments); None when empty, as
/// for kernel threads.
pub fn parse_cmdline(raw: &str) -> Option<String> {
    let joined = raw
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty() {
        return None;
    }
    let mut end = joined.len().min(MAX_COMMAND);
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    Some(joined[..end].to_owned())
}

/// The command line of a process that is still the one in `stat`.
pub fn read_command(source: &Source, p: &ProcStat) -> Option<String> {
    source
        .proc_file(&format!("{}/cmdline", p.pid))
        .ok()
        .and_then(|raw| parse_cmdline(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, comm: &str, state: char, ticks: u64, start: u64, rss: u64) -> String {
        format!(
            "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {ticks} 0 0 0 20 0 \
             3 0 {start} 1000000 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0"
        )
    }

    fn table(rows: &[String]) -> ProcessTable {
        ProcessTable {
            procs: rows
                .iter()
                .map(|r| parse_pid_stat(r).unwrap())
                .map(|p| (p.pid, p))
                .collect(),
        }
    }

    fn clock() -> Clock {
        Clock {
            ticks_per_second: 100,
            page_size: 4096,
            mem_total: 4096 * 1000,
            boot_time: 1_700_000_000,
        }
    }

    #[test]
    fn parses_the_captured_stat_and_hostile_names() {
        let p = parse_pid_stat(include_str!("testdata/pid_stat")).unwrap();
        assert_eq!((p.pid, p.ppid, p.state), (1, 0, 'S'));
        assert_eq!(p.comm, "process_api");
        assert_eq!(p.cpu_ticks, 906 + 2228);
        assert_eq!((p.threads, p.start_ticks, p.rss_pages), (13, 24, 5407));
        let p = parse_pid_stat(&stat(7, "a) R 1 (b", 'Z', 5, 9, 1)).unwrap();
        assert_eq!((p.comm.as_str(), p.state), ("a) R 1 (b", 'Z'));
        assert!(parse_pid_stat("7 (x) S 1 2").is_none());
        assert!(parse_pid_stat("").is_none());
        assert!(
            parse_pid_stat("x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22")
                .is_none()
        );
    }

    #[test]
    fn counts_and_top_lists() {
        let before = table(&[
            stat(10, "busy", 'R', 100, 50, 10),
            stat(11, "idle", 'S', 500, 50, 900),
            stat(12, "reused", 'S', 0, 50, 1),
        ]);
        let after = table(&[
            stat(10, "busy", 'R', 300, 50, 10),
            stat(11, "idle", 'S', 510, 50, 900),
            // Same pid, new process: its ticks must not count as a delta.
            stat(12, "reused", 'D', 900, 70, 1),
            stat(13, "zombie", 'Z', 0, 80, 0),
            stat(14, "stopped", 'T', 0, 80, 0),
        ]);
        let m = metrics(Some(&before), &after, 2.0, &clock(), &|p| {
            (p.pid == 10).then(|| "busy --flag".to_owned())
        });
        assert_eq!(m.total_processes, 5);
        assert_eq!(m.running_processes, 1);
        assert_eq!(m.sleeping_processes, 2);
        assert_eq!((m.stopped_processes, m.zombie_processes), (1, 1));
        assert_eq!(m.total_threads, 15);
        let top = &m.top_by_cpu[0];
        assert_eq!((top.pid, top.cpu_percent), (10, 100.0));
        assert_eq!(top.command, "busy --flag");
        assert_eq!(top.status, "running");
        assert_eq!(m.top_by_cpu[1].cpu_percent, 5.0);
        assert_eq!(m.top_by_cpu[2].cpu_percent, 0.0, "reused pid");
        let mem = &m.top_by_memory[0];
        assert_eq!(mem.pid, 11);
        assert_eq!(mem.memory_bytes, 900 * 4096);
        assert_eq!(mem.memory_percent, 90.0);
        assert_eq!(mem.command, "[idle]");
        assert_eq!(mem.start_time, "2023-11-14T22:13:20Z");
    }

    #[test]
    fn top_lists_are_bounded() {
        let rows: Vec<String> = (1..=25)
            .map(|i| stat(i, "p", 'S', 0, 0, i as u64))
            .collect();
        let m = metrics(None, &table(&rows), 1.0, &clock(), &|_| None);
        assert_eq!(m.top_by_cpu.len(), TOP);
        assert_eq!(m.top_by_memory.len(), TOP);
        assert_eq!(m.top_by_memory[0].pid, 25);
    }

    #[test]
    fn cmdlines() {
        assert_eq!(
            parse_cmdline("sleep\u{0}10\u{0}").as_deref(),
            Some("sleep 10")
        );
        assert_eq!(parse_cmdline(""), None);
        assert_eq!(parse_cmdline("\u{0}"), None);
        let long = "é".repeat(2000);
        assert!(parse_cmdline(&long).unwrap().len() <= MAX_COMMAND);
    }

    #[test]
    fn reads_this_hosts_processes() {
        let source = Source::default();
        let t = ProcessTable::read(&source);
        let me = std::process::id() as i32;
        let p = t.procs.get(&me).expect("our own process is listed");
        assert!(p.threads >= 1);
        assert!(read_command(&source, p).is_some());
    }
}
