//! A job's cgroup as the host sees it: which hierarchy the host has, where the job's
//! directories are, and the limit and accounting files in them, read the way an operator
//! would check what the kernel enforces.

use std::path::PathBuf;

use crate::{Job, System, host};

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
}

/// cgroup2 mounted at `/sys/fs/cgroup` means v2; anything else (a tmpfs of v1 hierarchies)
/// means v1.
pub fn mode() -> Mode {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2 = info.lines().any(|l| {
        let mut halves = l.split(" - ");
        let mount = halves.next().and_then(|pre| pre.split(' ').nth(4));
        let fstype = halves.next().and_then(|post| post.split(' ').next());
        mount == Some("/sys/fs/cgroup") && fstype == Some("cgroup2")
    });
    if v2 { Mode::V2 } else { Mode::V1 }
}

/// The job's cgroup directories that exist (one on v2, one per hierarchy on v1).
pub fn job_dirs(sys: &System, job: &Job) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = host::cgroup_paths(&sys.cgroup_base)
        .into_iter()
        .map(|p| p.join(format!("job-{}", job.id)))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Waits up to `limit` for the job's cgroup directories to be removed (the spawner removes
/// them once the last process is gone, which may trail the job's final state a little).
pub fn wait_removed(sys: &System, job: &Job, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if job_dirs(sys, job).is_empty() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Where `file` is among the job's directories (v1 controller files are unique to their
/// hierarchy).
pub fn job_file(sys: &System, job: &Job, file: &str) -> Option<PathBuf> {
    job_dirs(sys, job)
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.exists())
}

/// The trimmed content of one of the job's cgroup files.
pub fn read(sys: &System, job: &Job, file: &str) -> Option<String> {
    let path = job_file(sys, job, file)?;
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A `key value` entry of a flat-keyed cgroup file (`cpu.stat`, `memory.events`).
pub fn keyed(sys: &System, job: &Job, file: &str, key: &str) -> Option<u64> {
    read(sys, job, file)?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The job's memory limit in bytes (`None` = unlimited or not found).
pub fn memory_limit(sys: &System, job: &Job) -> Option<u64> {
    let file = match mode() {
        Mode::V1 => "memory.limit_in_bytes",
        Mode::V2 => "memory.max",
    };
    read(sys, job, file)?.parse().ok()
}

/// The job's CPU quota as (quota µs, period µs); `None` when unlimited.
pub fn cpu_quota(sys: &System, job: &Job) -> Option<(u64, u64)> {
    match mode() {
        Mode::V1 => {
            let quota: i64 = read(sys, job, "cpu.cfs_quota_us")?.parse().ok()?;
            let period: u64 = read(sys, job, "cpu.cfs_period_us")?.parse().ok()?;
            u64::try_from(quota).ok().map(|q| (q, period))
        }
        Mode::V2 => {
            let text = read(sys, job, "cpu.max")?;
            let (q, p) = text.split_once(' ')?;
            Some((q.parse().ok()?, p.parse().ok()?))
        }
    }
}

/// CPU time the job has used, µs.
pub fn cpu_usage_usec(sys: &System, job: &Job) -> Option<u64> {
    match mode() {
        Mode::V1 => read(sys, job, "cpuacct.usage")?
            .parse::<u64>()
            .ok()
            .map(|ns| ns / 1000),
        Mode::V2 => keyed(sys, job, "cpu.stat", "usage_usec"),
    }
}

/// Periods in which the job was throttled (`cpu.stat` `nr_throttled`, both versions).
pub fn nr_throttled(sys: &System, job: &Job) -> Option<u64> {
    keyed(sys, job, "cpu.stat", "nr_throttled")
}

/// The read-bandwidth rules of the job (`MAJ:MIN BPS` per device).
pub fn io_read_limits(sys: &System, job: &Job) -> Vec<(String, u64)> {
    match mode() {
        Mode::V1 => read(sys, job, "blkio.throttle.read_bps_device")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (dev, bps) = l.split_once(' ')?;
                Some((dev.to_owned(), bps.trim().parse().ok()?))
            })
            .collect(),
        Mode::V2 => read(sys, job, "io.max")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let dev = f.next()?;
                let rbps = f.find_map(|kv| kv.strip_prefix("rbps="))?;
                Some((dev.to_owned(), rbps.parse().ok()?))
            })
            .collect(),
    }
}

/// Every process of the job (union over its hierarchies).
pub fn procs(sys: &System, job: &Job) -> Vec<i32> {
    let mut pids: Vec<i32> = job_dirs(sys, job)
        .into_iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}
