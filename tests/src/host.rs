//! Reading the host's state: process trees, mounts, cgroups, leftovers.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A process identified by pid and start time (so pid reuse is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

/// What existed before a system started, to tell its leftovers from others'.
#[derive(Debug, Clone)]
pub struct Snapshot {
    tmp_entries: HashSet<String>,
}

pub fn snapshot() -> Snapshot {
    Snapshot {
        tmp_entries: tmp_entries(),
    }
}

fn tmp_entries() -> HashSet<String> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `(ppid, start time)` of a process from /proc/<pid>/stat.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn children(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).map(|(pp, _)| pp) == Some(pid))
        .collect()
}

/// Every process below `pid`, with `pid` itself.
pub fn descendants(pid: i32) -> Vec<Proc> {
    let table: Vec<(i32, i32, u64)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|(pp, st)| (p, pp, st)))
        .collect();
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        if let Some(&(p, _, st)) = table.iter().find(|(p, _, _)| *p == parent) {
            out.push(Proc { pid: p, start: st });
        }
        queue.extend(table.iter().filter(|(_, pp, _)| *pp == parent).map(|t| t.0));
    }
    out
}

pub fn alive(p: Proc) -> bool {
    stat(p.pid).is_some_and(|(_, st)| st == p.start)
}

/// File name of a process's executable.
pub fn exe_name(pid: i32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}

/// A `Key:\tvalue` line of /proc/<pid>/status.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Mount points (from our mount namespace) under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Where a cgroup subtree named `base` would be, in every hierarchy we belong to.
pub fn cgroup_paths(base: &str) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines() {
        let (pre, post) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let mount = match pre.split(' ').nth(4) {
            Some(m) => m,
            None => continue,
        };
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let opts = post.nth(1).unwrap_or("");
        let own_path = match fstype {
            "cgroup2" => own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(str::to_owned),
            "cgroup" => own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                let named = ctrls.split(',').all(|c| opts.split(',').any(|o| o == c));
                (named && !ctrls.is_empty()).then(|| path.to_owned())
            }),
            _ => None,
        };
        if let Some(p) = own_path {
            let root = Path::new(mount);
            out.push(root.join(p.trim_start_matches('/')).join(base));
            out.push(root.join(base));
        }
    }
    out
}

/// Everything a stopped system left behind.
pub fn leftovers(tree: &[Proc], dir: &Path, cgroup_base: &str, before: &Snapshot) -> Vec<String> {
    let mut found = Vec::new();
    for p in tree.iter().copied().filter(|&p| alive(p)) {
        found.push(format!(
            "process {} ({})",
            p.pid,
            exe_name(p.pid).unwrap_or_default()
        ));
    }
    for m in mounts_under(dir) {
        found.push(format!("mount {m}"));
    }
    for c in cgroup_paths(cgroup_base) {
        if c.exists() {
            found.push(format!("cgroup {}", c.display()));
        }
    }
    for entry in walk(dir) {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.ends_with(".sock")) {
            found.push(format!("socket {}", entry.display()));
        }
    }
    for e in tmp_entries().difference(&before.tmp_entries) {
        if e.contains("joblet") && !e.starts_with("joblet-e2e-") {
            found.push(format!("temporary entry /tmp/{e}"));
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Reads a string at `path` from a YAML document.
pub fn yaml_string(text: &str, path: &[&str]) -> Option<String> {
    let v: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    let mut cur = &v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str().map(str::to_owned)
}
