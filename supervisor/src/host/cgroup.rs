//! Which cgroup hierarchy this host offers: v2 when `/sys/fs/cgroup` is cgroup2 with the
//! controllers we need, else v1 when every needed v1 hierarchy is mounted. On v2, the
//! supervisor also leaves its delegated cgroup for a leaf, so that cgroup has no processes of
//! its own and controllers can be enabled below it (the "no internal processes" rule).

use std::path::{Path, PathBuf};

use joblet_ipc_proto::settings::CgroupMode;
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "cgroup v2 at {root} lacks the controllers {missing:?} (enable them in the parent's \
         cgroup.subtree_control, or with Delegate= in the systemd unit)"
    )]
    V2Missing { root: PathBuf, missing: Vec<String> },
    #[error(
        "no usable cgroup hierarchy: {root} is not cgroup2, and these cgroup v1 hierarchies are \
         not mounted under it: {missing:?}"
    )]
    NoHierarchy { root: PathBuf, missing: Vec<String> },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Detects the mode. `controllers` are v2 names; on v1 `io` is looked up as `blkio`.
pub fn detect(root: &Path, controllers: &[String]) -> Result<CgroupMode, CgroupError> {
    if is_fs(root, CGROUP2_SUPER_MAGIC) {
        let path = root.join("cgroup.controllers");
        let available =
            std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
        let missing = missing_v2(&available, controllers);
        if missing.is_empty() {
            return Ok(CgroupMode::V2);
        }
        return Err(CgroupError::V2Missing {
            root: root.to_owned(),
            missing,
        });
    }
    let missing: Vec<String> = controllers
        .iter()
        .map(|c| v1_name(c).to_owned())
        .filter(|c| !is_fs(&root.join(c), CGROUP_SUPER_MAGIC))
        .collect();
    if missing.is_empty() {
        Ok(CgroupMode::V1)
    } else {
        Err(CgroupError::NoHierarchy {
            root: root.to_owned(),
            missing,
        })
    }
}

fn is_fs(path: &Path, magic: nix::sys::statfs::FsType) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == magic)
}

fn v1_name(v2: &str) -> &str {
    match v2 {
        "io" => "blkio",
        other => other,
    }
}

/// The controllers of `wanted` not listed in a `cgroup.controllers` file.
pub fn missing_v2(available: &str, wanted: &[String]) -> Vec<String> {
    let have: Vec<&str> = available.split_whitespace().collect();
    wanted
        .iter()
        .filter(|w| !have.contains(&w.as_str()))
        .cloned()
        .collect()
}

/// The cgroup v2 path of this process (`/system.slice/joblet.service`), from
/// `/proc/self/cgroup`'s `0::` line.
pub fn own_v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// On v2, moves this process into `<own cgroup>/supervisor` unless it is in the root cgroup
/// (which is exempt from the no-internal-processes rule). Helpers, started afterwards, begin
/// there too; the delegated cgroup itself is left with no processes.
pub fn leave_delegated_root(root: &Path) -> std::io::Result<Option<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    let Some(own) = own_v2_path(&text) else {
        return Ok(None);
    };
    let relative = own.trim_start_matches('/');
    if relative.is_empty() || own.ends_with("/supervisor") {
        return Ok(None);
    }
    let leaf = root.join(relative).join("supervisor");
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::write(leaf.join("cgroup.procs"), b"0")?;
    Ok(Some(leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_controllers_are_named() {
        let wanted: Vec<String> = ["cpu", "memory", "pids", "io"].map(String::from).into();
        assert!(missing_v2("cpuset cpu io memory hugetlb pids rdma misc", &wanted).is_empty());
        assert_eq!(missing_v2("hugetlb", &wanted), wanted);
        assert_eq!(missing_v2("cpu memory pids\n", &wanted), ["io"]);
    }

    #[test]
    fn own_path_comes_from_the_unified_line() {
        let hybrid = "12:pids:/x\n1:name=systemd:/y\n0::/system.slice/joblet.service\n";
        assert_eq!(own_v2_path(hybrid), Some("/system.slice/joblet.service"));
        assert_eq!(own_v2_path("3:memory:/\n"), None);
    }

    /// The real kernel: whatever this host offers must be detected as one of the two modes
    /// (the CI host has v1 hierarchies, the guest v2), and a controller nobody has is refused.
    #[test]
    fn detects_this_host() {
        let root = Path::new(CGROUP_ROOT);
        let basic: Vec<String> = ["cpu", "memory", "pids"].map(String::from).into();
        let mode = detect(root, &basic).expect("this host has cpu, memory and pids");
        let unified = is_fs(root, CGROUP2_SUPER_MAGIC);
        assert_eq!(mode == CgroupMode::V2, unified);
        println!("cgroup mode here: {mode:?}");
        let err = detect(root, &["no-such-controller".to_string()]).unwrap_err();
        assert!(err.to_string().contains("no-such-controller"), "{err}");
    }
}
