//! What the host offers jobs: usable CPUs, memory, swap. Read once at open.

use std::path::Path;

use super::HostResources;
use super::error::CgroupError;
use super::files;
use super::limits::parse_cpu_list;

const CPU_ONLINE: &str = "/sys/devices/system/cpu/online";
const MEMINFO: &str = "/proc/meminfo";
const SWAPS: &str = "/proc/swaps";

/// `effective_cpus`: the cpuset our own cgroup may use, when the cpuset controller is there.
/// `own_memory_limit`: our own cgroup's memory limit, when one is set; jobs cannot get more.
pub(super) fn resources(
    effective_cpus: Option<&str>,
    own_memory_limit: Option<u64>,
) -> Result<HostResources, CgroupError> {
    let online = read_cpu_list(Path::new(CPU_ONLINE))?;
    let online_cpus = match effective_cpus {
        Some(list) => {
            let allowed = parse_cpu_list(list).ok_or_else(|| CgroupError::Parse {
                path: "effective cpuset".into(),
                detail: format!("{list:?} is not a CPU list"),
            })?;
            online.into_iter().filter(|c| allowed.contains(c)).collect()
        }
        None => online,
    };
    let total = mem_total()?;
    let memory_bytes = own_memory_limit.map_or(total, |l| l.min(total));
    Ok(HostResources {
        online_cpus,
        memory_bytes,
    })
}

fn read_cpu_list(path: &Path) -> Result<Vec<u32>, CgroupError> {
    let text = files::read(path)?;
    parse_cpu_list(&text).ok_or_else(|| CgroupError::Parse {
        path: path.to_owned(),
        detail: format!("{:?} is not a CPU list", text.trim()),
    })
}

fn mem_total() -> Result<u64, CgroupError> {
    let text = files::read(Path::new(MEMINFO))?;
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("MemTotal:")?;
            let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            kb.checked_mul(1024)
        })
        .ok_or_else(|| CgroupError::Parse {
            path: MEMINFO.into(),
            detail: "no MemTotal line".into(),
        })
}

/// True when any swap area is active (`/proc/swaps` has more than its header).
pub(super) fn has_swap() -> Result<bool, CgroupError> {
    let text = files::read(Path::new(SWAPS))?;
    Ok(text.lines().skip(1).any(|l| !l.trim().is_empty()))
}
