//! After each phase: nothing of the jobs or sandboxes may remain. The harness's check (in
//! `joblet_tests::host`, run by [`crate::system::BenchSystem::stop`]) covers processes,
//! mounts, cgroups, sockets and temporary entries; this adds namespaces (every namespace a
//! probe saw must be gone: held by no process, open fd or mount of ours), network interfaces
//! (none new on the host), mounts under the peers' directory, and the peers' own state.

use std::collections::BTreeSet;
use std::path::Path;

/// The host before a phase.
#[derive(Debug, Clone)]
pub struct Baseline {
    interfaces: BTreeSet<String>,
}

pub fn baseline() -> Baseline {
    Baseline {
        interfaces: interfaces(),
    }
}

fn interfaces() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Network interfaces (veths, bridges) that appeared on the host since `before`.
pub fn new_interfaces(before: &Baseline) -> Vec<String> {
    interfaces()
        .difference(&before.interfaces)
        .map(|i| format!("network interface {i}"))
        .collect()
}

/// What the namespace check found.
#[derive(Debug, Default)]
pub struct NamespaceCheck {
    /// Namespaces the probes saw that something of ours still holds.
    pub leftovers: Vec<String>,
    /// Held by a peer's process (bwrap, runc): a peer's leftover, not ours.
    pub peers: Vec<String>,
    /// Holders unrelated to us: the kernel reuses a freed namespace's inode number, so another
    /// process on this shared host may hold a new namespace with the same number.
    pub reused: Vec<String>,
    /// Holders that were gone before they could be told apart (a process that was exiting):
    /// the check is worth repeating, since an exiting process of ours looks the same.
    pub vanished: usize,
}

/// Which of `inodes` (namespaces that probes saw) are still alive, and what holds them. A
/// holding process is ours if it is in one of our cgroups (`cgroup_marks`), runs one of our
/// binaries, or descends from this program; a holding mount is ours if it lies under one of
/// `our_dirs`.
pub fn live_namespaces(
    inodes: &BTreeSet<u64>,
    cgroup_marks: &[&str],
    our_dirs: &[&Path],
) -> NamespaceCheck {
    let mut check = NamespaceCheck::default();
    if inodes.is_empty() {
        return check;
    }
    let mut found = BTreeSet::new();
    for pid in pids() {
        for sub in ["ns", "fd"] {
            let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/{sub}")) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(link) = std::fs::read_link(e.path()) else {
                    continue;
                };
                if let Some(ino) = ns_link_inode(&link.to_string_lossy())
                    && inodes.contains(&ino)
                {
                    found.insert((ino, pid, sub));
                }
            }
        }
    }
    for (ino, pid, sub) in found {
        // Unreadable: the process is gone (its name was the first thing to read).
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            check.vanished += 1;
            continue;
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|c| c.lines().find(|l| l.contains("pids")).map(str::to_owned))
            .unwrap_or_default();
        let who = format!(
            "namespace {ino} held by process {pid} ({}, {sub}, cgroup {cgroup})",
            comm.trim()
        );
        if is_ours(pid, cgroup_marks) {
            check.leftovers.push(who);
        } else if PEER_COMMS.contains(&comm.trim()) {
            check.peers.push(who);
        } else {
            check.reused.push(who);
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for (ino, mount_point) in nsfs_mounts(&info) {
        if inodes.contains(&ino) {
            let what = format!("namespace {ino} bind-mounted at {mount_point}");
            if our_dirs
                .iter()
                .any(|d| Path::new(&mount_point).starts_with(d))
            {
                check.leftovers.push(what);
            } else {
                check.reused.push(what);
            }
        }
    }
    check
}

/// The peers' own processes, by command name. bwrap's inner process (PID 1 of the sandbox) is
/// reparented to the host's init when the outer one exits, and stays a zombie (pinning its
/// pid namespace) until init reaps it.
const PEER_COMMS: &[&str] = &["bwrap", "runc", "runc:[2:INIT]", "unshare"];

/// Our binaries, by executable name.
const OUR_EXES: &[&str] = &[
    "joblet",
    "joblet-spawner",
    "joblet-api",
    "joblet-persistd",
    "joblet-stated",
    "rnx",
    "joblet-bench",
];

fn is_ours(pid: u32, cgroup_marks: &[&str]) -> bool {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if cgroup_marks.iter().any(|m| cgroups.contains(m)) {
        return true;
    }
    if joblet_tests::host::exe_name(pid as i32).is_some_and(|e| OUR_EXES.contains(&e.as_str())) {
        return true;
    }
    descends_from(pid, std::process::id())
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
                rest.split_whitespace().nth(1)?.parse().ok()
            })
        else {
            return false;
        };
        pid = ppid;
    }
    false
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What `/proc/PID/ns/*` links (and open namespace fds) are called.
const NS_KINDS: &[&str] = &[
    "pid",
    "pid_for_children",
    "net",
    "mnt",
    "ipc",
    "uts",
    "user",
    "cgroup",
    "time",
    "time_for_children",
];

/// `net:[4026532183]` → 4026532183; anything else (sockets, pipes, files) → None.
fn ns_link_inode(link: &str) -> Option<u64> {
    let (kind, rest) = link.split_once(":[")?;
    if !NS_KINDS.contains(&kind) {
        return None;
    }
    rest.strip_suffix(']')?.parse().ok()
}

/// `(inode, mount point)` of every nsfs mount in a mountinfo text.
fn nsfs_mounts(mountinfo: &str) -> Vec<(u64, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            if post.split(' ').next()? != "nsfs" {
                return None;
            }
            let mut f = pre.split(' ');
            let root = f.nth(3)?;
            let mount_point = f.next()?;
            Some((ns_link_inode(root)?, mount_point.to_owned()))
        })
        .collect()
}

/// Mount points under `dir` (the peers' bundles and roots).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    joblet_tests::host::mounts_under(dir)
        .into_iter()
        .map(|m| format!("mount {m}"))
        .collect()
}

/// Processes still running below the benchmark itself (sandboxes it started).
pub fn own_children() -> Vec<String> {
    joblet_tests::host::children(std::process::id() as i32)
        .into_iter()
        .map(|pid| {
            format!(
                "process {pid} ({})",
                joblet_tests::host::exe_name(pid).unwrap_or_default()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_links_are_recognised() {
        assert_eq!(ns_link_inode("net:[4026532183]"), Some(4026532183));
        assert_eq!(ns_link_inode("pid_for_children:[5]"), Some(5));
        assert_eq!(ns_link_inode("socket:[123]"), None);
        assert_eq!(ns_link_inode("/dev/null"), None);
        assert_eq!(ns_link_inode("anon_inode:[pidfd]"), None);
    }

    #[test]
    fn nsfs_mounts_are_found_in_mountinfo() {
        let info = "36 25 0:4 net:[4026532300] /run/netns/x rw shared:5 - nsfs nsfs rw\n\
                    37 25 0:22 / /proc rw - proc proc rw\n";
        assert_eq!(
            nsfs_mounts(info),
            vec![(4026532300, "/run/netns/x".to_owned())]
        );
    }

    #[test]
    fn a_namespace_of_a_live_process_is_found_and_a_gone_one_is_not() {
        let own = crate::isolation::own_namespaces();
        let net = own["net"];
        let live = live_namespaces(&BTreeSet::from([net]), &[], &[]);
        assert!(
            live.leftovers
                .iter()
                .any(|l| l.contains(&std::process::id().to_string())),
            "our own net namespace not found as ours: {live:?}"
        );
        let none = live_namespaces(&BTreeSet::from([1]), &[], &[]);
        assert!(none.leftovers.is_empty() && none.reused.is_empty());
    }
}
