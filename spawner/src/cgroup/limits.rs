//! Turning a request's limits into kernel limits, against what this host offers. Pure logic:
//! the drivers hand in what they found at open.

use joblet_ipc_proto::{job::Limits, validate};

use super::{HostResources, IoLimit, ResolvedLimits, error::CgroupError};

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
    let cpus = match limits.cpu_cores.as_str() {
        "" => Vec::new(),
        list => validate::cpu_list(list)?,
    };
    let offline = cpus.iter().find(|c| !host.online_cpus.contains(c));
    let online: Vec<String> = host.online_cpus.iter().map(u32::to_string).collect();
    let usable = match cpus.len() {
        0 => host.online_cpus.len(),
        n => n,
    };
    let (percent, mb, bps) = (limits.cpu_percent, limits.memory_mb, limits.io_bps);
    let mut devices = io_devices.to_vec();
    devices.sort_unstable();
    devices.dedup();
    let pids = match limits.pids_max {
        0 => default_pids_max,
        p => p,
    };
    let (needs, host_mb) = (percent.div_ceil(100), host.memory_bytes / MIB);
    let max_pids = validate::MAX_PIDS;
    let no_controller =
        |c: &str| format!("the {c} controller is not available to joblet on this host");
    // Every refusal, in order; the first that applies is the answer.
    #[rustfmt::skip]
    let refusals = [
        (!cpus.is_empty() && !caps.cpuset, "cpu_cores", no_controller("cpuset")),
        (offline.is_some(), "cpu_cores", format!("CPU {} is not online here (usable CPUs: {})", offline.unwrap_or(&0), online.join(","))),
        (u64::from(percent) > usable as u64 * 100, "max_cpu", format!("{percent}% needs {needs} CPUs, the job may use {usable}")),
        (mb > 0 && mb.saturating_mul(MIB) > host.memory_bytes, "max_memory", format!("{mb} MiB is more than the {host_mb} MiB this host can give jobs")),
        (mb > 0 && caps.host_swap && !caps.swap_limit, "max_memory", "the host has swap but no swap accounting (boot with swapaccount=1), so swap could not be kept from the job".into()),
        (bps > 0 && !caps.io, "max_io_bps", no_controller("io (blkio)")),
        (bps > 0 && devices.is_empty(), "max_io_bps", "no block device backs the job's storage (its writable space is a tmpfs; the allowed mounts are on tmpfs, overlay or network filesystems), so there is nothing to limit".into()),
        (pids == 0 || pids > max_pids, "pids limit", format!("{pids} is not a usable pids limit (the configured default must be 1..={max_pids})")),
    ];
    if let Some((_, limit, detail)) = refusals.into_iter().find(|r| r.0) {
        return Err(CgroupError::LimitUnavailable { limit, detail });
    }
    let io = match bps {
        0 => Vec::new(),
        bps => devices
            .into_iter()
            .map(|(major, minor)| IoLimit { major, minor, bps })
            .collect(),
    };
    Ok(ResolvedLimits {
        cpu_percent: percent,
        cpus,
        memory_bytes: mb.saturating_mul(MIB),
        io,
        pids_max: pids,
    })
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
}
