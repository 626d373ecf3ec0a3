//! The machine a result was measured on, printed above the tables.

use std::process::Command;

/// `key: value` lines: date, CPUs, memory, kernel, load, peer versions.
pub fn describe() -> Vec<(String, String)> {
    let mut out = vec![
        (
            "date (UTC)".into(),
            first_line("date", &["-u", "+%Y-%m-%d %H:%M:%S"]),
        ),
        (
            "CPUs".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
        ),
        ("CPU model".into(), cpu_model()),
        ("memory".into(), mem_total()),
        ("kernel".into(), read_trim("/proc/sys/kernel/osrelease")),
        ("load average at start".into(), load()),
    ];
    for (peer, args) in [("bwrap", "--version"), ("runc", "--version")] {
        out.push((format!("{peer} version"), first_line(peer, &[args])));
    }
    out
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not available".into())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kb: u64 = s
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "?".into())
}

fn load() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn describes_this_machine() {
        let d = super::describe();
        let get = |k: &str| d.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert!(get("CPUs").parse::<usize>().unwrap() >= 1);
        assert!(get("memory").ends_with("GiB"));
        assert!(!get("kernel").is_empty());
    }
}
