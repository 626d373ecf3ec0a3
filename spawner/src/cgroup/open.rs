//! Finding the hierarchies at open: where they are mounted, where we are in them, which
//! controllers they give us; creating our base; and what the host can offer jobs.

use std::path::{Path, PathBuf};

use joblet_ipc_proto::settings::CgroupMode;

use super::error::{CgroupError, missing};
use super::limits::Capabilities;
use super::mountinfo::{self, Membership, Mount};
use super::{Hierarchy, HostResources, devices, files};

type Opened = (Vec<Hierarchy>, HostResources, Capabilities);

const V1_KNOWN: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];
const V1_REQUIRED: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "devices", "freezer"];
const V2_REQUIRED: [&str; 3] = ["cpu", "memory", "pids"];
const V2_OPTIONAL: [&str; 2] = ["cpuset", "io"];
/// The leaf our own cgroup's processes move to when controllers must be enabled below it.
const DAEMONS_LEAF: &str = "joblet-daemons";

/// Refuses when a required controller is absent, naming every one.
fn require(absent: &[&str], mode: CgroupMode) -> Result<(), CgroupError> {
    if absent.is_empty() {
        return Ok(());
    }
    Err(missing(&absent.join(", "), mode))
}

/// Finds the hierarchies of `mode` below `root`, creates our base in each, and reads what the
/// host offers. On error, removes the bases it created.
pub(super) fn open(mode: CgroupMode, root: &Path, base: &str) -> Result<Opened, CgroupError> {
    let mounts = mountinfo::read_mounts()?;
    let members = mountinfo::read_memberships()?;
    let hierarchies = match mode {
        CgroupMode::V1 => find_v1_hierarchies(&mounts, &members, root, base)?,
        CgroupMode::V2 => vec![find_v2_hierarchy(&mounts, &members, root, base)?],
    };
    let mut created = Vec::new();
    match prepare(mode, &hierarchies, &mut created) {
        Ok((host, caps)) => Ok((hierarchies, host, caps)),
        Err(e) => {
            files::undo_created(&created);
            Err(e)
        }
    }
}

/// Our own cgroup's directory under mount `m`, from our `/proc/self/cgroup` line `member`.
fn own_dir(m: &Mount, member: Option<&Membership>, what: &str) -> Result<PathBuf, CgroupError> {
    let detail = match member {
        None => format!("{} has no line for {what}", mountinfo::SELF_CGROUP),
        Some(mb) => match mountinfo::own_dir(m, &mb.path) {
            Some(dir) => return Ok(dir),
            None => format!(
                "our {what} cgroup {} is not visible under the mount {}",
                mb.path,
                m.mount_point.display()
            ),
        },
    };
    Err(CgroupError::OwnCgroup(detail))
}

/// The v1 hierarchies below `root` that carry controllers we use, with our own cgroup in
/// each and the base directory we will use there. Fails when a required one is missing.
/// Named hierarchies and cgroup2 mounts are ignored.
fn find_v1_hierarchies(
    mounts: &[Mount],
    members: &[Membership],
    root: &Path,
    base: &str,
) -> Result<Vec<Hierarchy>, CgroupError> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for m in mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.mount_point.starts_with(root))
    {
        let controllers = mountinfo::v1_controllers(m, &V1_KNOWN);
        let ours = |c: &String| controllers.contains(&c.as_str());
        let seen = |h: &Hierarchy| h.controllers.iter().any(|c| controllers.contains(c));
        if controllers.is_empty() || found.iter().any(seen) {
            continue;
        }
        let member = members
            .iter()
            .find(|mb| mb.hierarchy_id != 0 && mb.controllers.iter().any(ours));
        let own = own_dir(m, member, &controllers.join(","))?;
        found.push(Hierarchy {
            controllers,
            base: own.join(base),
            own,
        });
    }
    if found.is_empty() {
        return Err(CgroupError::Mount(format!(
            "no cgroup v1 hierarchy is mounted below {} (cgroup mode V1 configured; a \
                 host with only cgroup2 needs mode V2)",
            root.display()
        )));
    }
    let has = |c: &&str| found.iter().any(|h| h.controllers.contains(c));
    let absent: Vec<&str> = V1_REQUIRED.into_iter().filter(|c| !has(c)).collect();
    require(&absent, CgroupMode::V1)?;
    Ok(found)
}

/// The unified hierarchy mounted at `root`, with the controllers we use enabled in our own
/// cgroup's subtree.
fn find_v2_hierarchy(
    mounts: &[Mount],
    members: &[Membership],
    root: &Path,
    base: &str,
) -> Result<Hierarchy, CgroupError> {
    let is_v2_root = |m: &&Mount| m.fstype == "cgroup2" && m.mount_point == root;
    let Some(mount) = mounts.iter().find(is_v2_root) else {
        let v1_below = mounts
            .iter()
            .any(|m| m.fstype == "cgroup" && m.mount_point.starts_with(root));
        let hint = "; cgroup v1 hierarchies are mounted below it, so this host needs mode V1";
        return Err(CgroupError::Mount(format!(
            "{} is not a cgroup2 mount (cgroup mode V2 configured){}",
            root.display(),
            if v1_below { hint } else { "" }
        )));
    };
    let own = own_dir(mount, members.iter().find(|m| m.hierarchy_id == 0), "v2")?;
    let available = words(&own.join("cgroup.controllers"))?;
    let has = |c: &&str| available.iter().any(|a| a == c);
    let absent: Vec<&str> = V2_REQUIRED.into_iter().filter(|c| !has(c)).collect();
    require(&absent, CgroupMode::V2)?;
    for c in V2_OPTIONAL.iter().filter(|c| !has(c)) {
        tracing::warn!(controller = c, cgroup = %own.display(),
            "optional controller not delegated to us; limits needing it will be refused");
    }
    let controllers: Vec<&str> = V2_REQUIRED
        .iter()
        .chain(&V2_OPTIONAL)
        .copied()
        .filter(has)
        .collect();
    // Only non-root cgroups have cgroup.type; the root is exempt from the no-internal-process
    // rule (a cgroup namespace root is not).
    enable_controllers(&own, &controllers, own.join("cgroup.type").exists())?;
    Ok(Hierarchy {
        controllers,
        base: own.join(base),
        own,
    })
}

/// Creates our bases (recording those it made in `created`), readies them for jobs, and reads
/// what the host can give jobs.
fn prepare(
    mode: CgroupMode,
    hierarchies: &[Hierarchy],
    created: &mut Vec<PathBuf>,
) -> Result<(HostResources, Capabilities), CgroupError> {
    for h in hierarchies {
        if files::ensure_dir(&h.base)? {
            created.push(h.base.clone());
        }
        if mode == CgroupMode::V2 {
            enable_controllers(&h.base, &h.controllers, false)?;
            if !h.base.join("cgroup.kill").exists() {
                let too_old = "no cgroup.kill: cgroup v2 needs Linux 5.14 or later";
                return Err(CgroupError::Mount(too_old.into()));
            }
        }
    }
    let find = |c| hierarchies.iter().find(|h| h.controllers.contains(&c));
    if let (CgroupMode::V1, Some(h)) = (mode, find("devices")) {
        devices::restrict_v1(&h.base)?;
    }
    let cpuset = find("cpuset");
    if let (CgroupMode::V1, Some(h)) = (mode, cpuset) {
        // A new v1 cpuset has no CPUs and no memory nodes, and takes no task until it has both;
        // with `clone_children` the kernel copies the base's into each job's cpuset.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if files::read(&h.base.join(file))?.trim().is_empty() {
                files::write(&h.base.join(file), files::read(&h.own.join(file))?.trim())?;
            }
        }
        files::write(&h.base.join("cgroup.clone_children"), "1")?;
    }
    // The same facts, in each mode's files.
    #[rustfmt::skip]
    let (cpus, memory_limit, swap_limit, io) = match mode {
        CgroupMode::V1 => ("cpuset.effective_cpus", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "blkio"),
        CgroupMode::V2 => ("cpuset.cpus.effective", "memory.max", "memory.swap.max", "io"),
    };
    let memory = find("memory").ok_or_else(|| missing("memory", mode))?;
    let effective = cpuset.map(|h| files::read(&h.own.join(cpus))).transpose()?;
    let own_limit = files::read(&memory.own.join(memory_limit)).ok();
    let own_limit = own_limit.and_then(|l| l.trim().parse().ok());
    let host = host_resources(effective.as_deref(), own_limit)?;
    let caps = Capabilities {
        cpuset: cpuset.is_some(),
        io: find(io).is_some(),
        swap_limit: memory.base.join(swap_limit).exists(),
        host_swap: has_swap()?,
    };
    Ok((host, caps))
}

fn words(path: &Path) -> Result<Vec<String>, CgroupError> {
    let text = files::read(path)?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

/// Enables `wanted` in `dir/cgroup.subtree_control`. A non-root cgroup with processes cannot
/// (no internal processes), so with `move_members` those first move to the leaf
/// [`DAEMONS_LEAF`]; without it (our base, which holds no process) the kernel's refusal is
/// reported.
fn enable_controllers(dir: &Path, wanted: &[&str], move_members: bool) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = words(&control)?;
    let missing = wanted.iter().filter(|w| !enabled.iter().any(|e| e == *w));
    let todo: Vec<String> = missing.map(|c| format!("+{c}")).collect();
    if todo.is_empty() {
        return Ok(());
    }
    if move_members {
        move_members_to_leaf(dir)?;
    }
    files::write(&control, &todo.join(" "))?;
    tracing::info!(cgroup = %dir.display(), controllers = ?todo, "enabled controllers");
    Ok(())
}

fn move_members_to_leaf(dir: &Path) -> Result<(), CgroupError> {
    let leaf = dir.join(DAEMONS_LEAF);
    // A process may fork while we move the others; a few passes catch the children.
    for _ in 0..10 {
        let pids = files::procs(dir)?;
        if pids.is_empty() {
            return Ok(());
        }
        files::ensure_dir(&leaf)?;
        for pid in pids {
            match files::attach(&leaf, pid) {
                Ok(()) => tracing::info!(pid, leaf = %leaf.display(), "moved process to leaf"),
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Err(CgroupError::NotEmpty(dir.to_owned()))
}

const CPU_ONLINE: &str = "/sys/devices/system/cpu/online";
const MEMINFO: &str = "/proc/meminfo";

/// `effective_cpus`: the cpuset our own cgroup may use, when the cpuset controller is there.
/// `own_memory_limit`: our own cgroup's memory limit, when one is set; jobs cannot get more.
fn host_resources(
    effective_cpus: Option<&str>,
    own_memory_limit: Option<u64>,
) -> Result<HostResources, CgroupError> {
    let cpu_list = |path: &Path, text: &str| {
        let not_a_list = || format!("{:?} is not a CPU list", text.trim());
        parse_cpu_list(text).ok_or_else(|| CgroupError::Parse(path.to_owned(), not_a_list()))
    };
    let online_path = Path::new(CPU_ONLINE);
    let mut online_cpus = cpu_list(online_path, &files::read(online_path)?)?;
    if let Some(list) = effective_cpus {
        let allowed = cpu_list(Path::new("effective cpuset"), list)?;
        online_cpus.retain(|c| allowed.contains(c));
    }
    let meminfo = files::read(Path::new(MEMINFO))?;
    let total = meminfo
        .lines()
        .find_map(|l| {
            let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
            kb.trim().parse::<u64>().ok()?.checked_mul(1024)
        })
        .ok_or_else(|| CgroupError::Parse(MEMINFO.into(), "no MemTotal line".into()))?;
    Ok(HostResources {
        online_cpus,
        memory_bytes: own_memory_limit.map_or(total, |l| l.min(total)),
    })
}

/// Parses a cpuset list as the kernel writes it (`0-3,6`; may be empty).
fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    match s.trim() {
        "" => Some(Vec::new()),
        s => joblet_ipc_proto::validate::cpu_list(s).ok(),
    }
}

/// True when any swap area is active (`/proc/swaps` has more than its header).
fn has_swap() -> Result<bool, CgroupError> {
    let text = files::read(Path::new("/proc/swaps"))?;
    Ok(text.lines().skip(1).any(|l| !l.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mountinfo::{parse_mountinfo, parse_proc_cgroup};

    const MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
90 23 0:32 / /mnt/memory-again rw - cgroup cgroup rw,memory
";
    const SELF: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
1:cpu,cpuacct:/
0::/
";

    fn find(mounts: &str, own: &str) -> Result<Vec<Hierarchy>, CgroupError> {
        let root = Path::new("/sys/fs/cgroup");
        find_v1_hierarchies(
            &parse_mountinfo(mounts),
            &parse_proc_cgroup(own),
            root,
            "joblet",
        )
    }

    #[test]
    fn finds_co_mounted_hierarchies_and_our_place_in_them() {
        let h = find(MOUNTS, SELF).unwrap();
        assert_eq!(
            h.len(),
            6,
            "blkio absent, systemd and unified ignored: {h:?}"
        );
        assert_eq!(h[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[0].base, Path::new("/sys/fs/cgroup/cpu,cpuacct/joblet"));
        let mem = h.iter().find(|h| h.controllers == ["memory"]).unwrap();
        assert_eq!(mem.own, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(
            mem.base,
            Path::new("/sys/fs/cgroup/memory/process_api/abc/joblet")
        );
    }

    #[test]
    fn names_missing_required_controllers() {
        let mounts: String = MOUNTS
            .lines()
            .filter(|l| !l.contains("freezer") && !l.contains("rw,pids"))
            .map(|l| format!("{l}\n"))
            .collect();
        match find(&mounts, SELF).unwrap_err() {
            CgroupError::MissingController { controller, mode } => {
                assert_eq!(controller, "pids, freezer");
                assert_eq!(mode, CgroupMode::V1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pure_v2_host_is_not_a_v1_host() {
        let err = find(
            "41 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/\n",
        );
        assert!(matches!(err, Err(CgroupError::Mount(_))), "{err:?}");
    }

    #[test]
    fn kernel_cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("\n"), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
