//! Turning a request's limits into kernel limits, against what this host offers. Pure logic:
//! the drivers hand in what they found at open.

use joblet_ipc_proto::job::Limits;
use joblet_ipc_proto::validate;

use super::error::CgroupError;
use super::{HostResources, IoLimit, ResolvedLimits};

const MIB: u64 = 1024 * 1024;

/// What the host can do beyond its CPUs and memory, found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The cpuset controller is usable (pinning to cores).
    pub cpuset: bool,
    /// The io (v2) or blkio (v1) controller is usable (bandwidth limits).
    pub io: bool,
    /// Swap can be limited (v1 `memory.memsw.*`, v2 `memory.swap.max`).
    pub swap_limit: bool,
    /// The host has swap configured (`/proc/swaps`).
    pub host_swap: bool,
}

pub(super) fn resolve(
    host: &HostResources,
    caps: Capabilities,
    limits: &Limits,
    default_pids_max: u32,
    io_devices: &[(u32, u32)],
) -> Result<ResolvedLimits, CgroupError> {
    validate::limits(limits)?;
    let cpus = cpus(host, caps, &limits.cpu_cores)?;
    let usable = if cpus.is_empty() {
        host.online_cpus.len()
    } else {
        cpus.len()
    };
    cpu_percent(limits.cpu_percent, usable)?;
    Ok(ResolvedLimits {
        cpu_percent: limits.cpu_percent,
        cpus,
        memory_bytes: memory(host, caps, limits.memory_mb)?,
        io: io(caps, limits.io_bps, io_devices)?,
        pids_max: pids(limits.pids_max, default_pids_max)?,
    })
}

fn cpus(host: &HostResources, caps: Capabilities, list: &str) -> Result<Vec<u32>, CgroupError> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let cpus = validate::cpu_list(list)?;
    if !caps.cpuset {
        return Err(CgroupError::LimitUnavailable {
            limit: "cpu_cores",
            detail: "the cpuset controller is not available to joblet on this host".into(),
        });
    }
    if let Some(cpu) = cpus.iter().find(|c| !host.online_cpus.contains(c)) {
        return Err(CgroupError::LimitUnavailable {
            limit: "cpu_cores",
            detail: format!(
                "CPU {cpu} is not online here (usable CPUs: {})",
                format_cpu_list(&host.online_cpus)
            ),
        });
    }
    Ok(cpus)
}

fn cpu_percent(percent: u32, usable_cpus: usize) -> Result<(), CgroupError> {
    let most = u64::try_from(usable_cpus)
        .unwrap_or(u64::MAX)
        .saturating_mul(100);
    if u64::from(percent) > most {
        return Err(CgroupError::LimitUnavailable {
            limit: "max_cpu",
            detail: format!(
                "{percent}% needs {} CPUs, the job may use {usable_cpus}",
                percent.div_ceil(100)
            ),
        });
    }
    Ok(())
}

fn memory(host: &HostResources, caps: Capabilities, mb: u64) -> Result<u64, CgroupError> {
    if mb == 0 {
        return Ok(0);
    }
    let bytes = mb.saturating_mul(MIB);
    if bytes > host.memory_bytes {
        return Err(CgroupError::LimitUnavailable {
            limit: "max_memory",
            detail: format!(
                "{mb} MiB is more than the {} MiB this host can give jobs",
                host.memory_bytes / MIB
            ),
        });
    }
    if caps.host_swap && !caps.swap_limit {
        return Err(CgroupError::LimitUnavailable {
            limit: "max_memory",
            detail: "the host has swap but no swap accounting (boot with swapaccount=1), so \
                     swap could not be kept from the job"
                .into(),
        });
    }
    Ok(bytes)
}

fn io(caps: Capabilities, bps: u64, devices: &[(u32, u32)]) -> Result<Vec<IoLimit>, CgroupError> {
    if bps == 0 {
        return Ok(Vec::new());
    }
    if !caps.io {
        return Err(CgroupError::LimitUnavailable {
            limit: "max_io_bps",
            detail: "the io (blkio) controller is not available to joblet on this host".into(),
        });
    }
    let mut devices = devices.to_vec();
    devices.sort_unstable();
    devices.dedup();
    if devices.is_empty() {
        return Err(CgroupError::LimitUnavailable {
            limit: "max_io_bps",
            detail: "no block device backs the job's storage (tmpfs, overlay or network \
                     filesystem), so there is nothing to limit"
                .into(),
        });
    }
    Ok(devices
        .into_iter()
        .map(|(major, minor)| IoLimit { major, minor, bps })
        .collect())
}

fn pids(requested: u32, default: u32) -> Result<u32, CgroupError> {
    let pids = if requested > 0 { requested } else { default };
    if pids == 0 || pids > validate::MAX_PIDS {
        return Err(CgroupError::LimitUnavailable {
            limit: "pids limit",
            detail: format!(
                "{pids} is not a usable pids limit (the configured default must be 1..={})",
                validate::MAX_PIDS
            ),
        });
    }
    Ok(pids)
}

/// Formats CPU numbers as a cpuset list (`0-3,6`), the form the kernel reads.
pub(super) fn format_cpu_list(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Parses a cpuset list as the kernel writes it (may be empty).
pub(super) fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
        if lo > hi {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostResources {
        HostResources {
            online_cpus: vec![0, 1],
            memory_bytes: 1024 * MIB,
        }
    }

    const ALL: Capabilities = Capabilities {
        cpuset: true,
        io: true,
        swap_limit: true,
        host_swap: false,
    };

    fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
        let mut l = Limits::default();
        f(&mut l);
        l
    }

    fn refused(r: Result<ResolvedLimits, CgroupError>) -> &'static str {
        match r {
            Err(CgroupError::LimitUnavailable { limit, .. }) => limit,
            other => panic!("expected LimitUnavailable, got {other:?}"),
        }
    }

    #[test]
    fn resolves_a_full_request_into_kernel_units() {
        let l = limits(|l| {
            l.cpu_percent = 150;
            l.cpu_cores = "0-1".into();
            l.memory_mb = 256;
            l.io_bps = 1000;
        });
        let r = resolve(&host(), ALL, &l, 64, &[(8, 0), (7, 1), (8, 0)]).unwrap();
        assert_eq!(r.cpu_percent, 150);
        assert_eq!(r.cpus, [0, 1]);
        assert_eq!(r.memory_bytes, 256 * MIB);
        assert_eq!(r.pids_max, 64, "default applied");
        assert_eq!(
            r.io,
            [
                IoLimit {
                    major: 7,
                    minor: 1,
                    bps: 1000
                },
                IoLimit {
                    major: 8,
                    minor: 0,
                    bps: 1000
                }
            ]
        );
    }

    #[test]
    fn nothing_requested_means_nothing_limited_but_pids() {
        let r = resolve(&host(), ALL, &Limits::default(), 10, &[]).unwrap();
        assert_eq!((r.cpu_percent, r.memory_bytes, r.pids_max), (0, 0, 10));
        assert!(r.cpus.is_empty() && r.io.is_empty());
        let l = limits(|l| l.pids_max = 5);
        assert_eq!(resolve(&host(), ALL, &l, 10, &[]).unwrap().pids_max, 5);
    }

    #[test]
    fn refuses_what_the_host_cannot_apply() {
        let h = host();
        let cpu2 = limits(|l| l.cpu_cores = "1-2".into());
        assert_eq!(refused(resolve(&h, ALL, &cpu2, 1, &[])), "cpu_cores");
        let no_cpuset = Capabilities {
            cpuset: false,
            ..ALL
        };
        let cpu0 = limits(|l| l.cpu_cores = "0".into());
        assert_eq!(refused(resolve(&h, no_cpuset, &cpu0, 1, &[])), "cpu_cores");
        let mem = limits(|l| l.memory_mb = 1025);
        assert_eq!(refused(resolve(&h, ALL, &mem, 1, &[])), "max_memory");
        let mem_ok = limits(|l| l.memory_mb = 1024);
        assert!(resolve(&h, ALL, &mem_ok, 1, &[]).is_ok());
        let swap = Capabilities {
            swap_limit: false,
            host_swap: true,
            ..ALL
        };
        assert_eq!(refused(resolve(&h, swap, &mem_ok, 1, &[])), "max_memory");
        let io = limits(|l| l.io_bps = 1);
        assert_eq!(refused(resolve(&h, ALL, &io, 1, &[])), "max_io_bps");
        let no_io = Capabilities { io: false, ..ALL };
        assert_eq!(refused(resolve(&h, no_io, &io, 1, &[(8, 0)])), "max_io_bps");
        let cpu = limits(|l| l.cpu_percent = 201);
        assert_eq!(refused(resolve(&h, ALL, &cpu, 1, &[])), "max_cpu");
        let pinned = limits(|l| {
            l.cpu_percent = 150;
            l.cpu_cores = "1".into();
        });
        assert_eq!(refused(resolve(&h, ALL, &pinned, 1, &[])), "max_cpu");
        assert_eq!(
            refused(resolve(&h, ALL, &Limits::default(), 0, &[])),
            "pids limit"
        );
    }

    #[test]
    fn statically_invalid_limits_are_invalid_not_unavailable() {
        let l = limits(|l| l.cpu_cores = "3-1".into());
        assert!(matches!(
            resolve(&host(), ALL, &l, 1, &[]),
            Err(CgroupError::Invalid(_))
        ));
    }

    #[test]
    fn cpu_lists_format_and_parse() {
        assert_eq!(format_cpu_list(&[3, 0, 1, 2, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpu_list(&[0]), "0");
        assert_eq!(format_cpu_list(&[]), "");
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("\n"), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
