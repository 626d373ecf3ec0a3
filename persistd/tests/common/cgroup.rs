//! Real cgroups for the metric tests: children of the test process's own cgroup in each
//! hierarchy (v1 on the host, v2 in the guest), removed on drop even when a test fails.
//! Existing cgroups are never written to, except that on v2 the controllers the job needs are
//! enabled in our own cgroup's `cgroup.subtree_control` (possible only where we are the root
//! cgroup, as in the guest; elsewhere the test is skipped with the reason).

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use joblet_ipc_proto::channel::output::CgroupDir;

/// v1 hierarchies a job's cgroup spans, and the controller that names each.
const V1: [(CgroupDir, &str); 5] = [
    (CgroupDir::Cpu, "cpu"),
    (CgroupDir::Cpuacct, "cpuacct"),
    (CgroupDir::Memory, "memory"),
    (CgroupDir::Blkio, "blkio"),
    (CgroupDir::Pids, "pids"),
];

const V2_CONTROLLERS: [&str; 4] = ["cpu", "memory", "io", "pids"];

pub struct TestCgroup {
    dirs: Vec<(CgroupDir, PathBuf)>,
}

impl TestCgroup {
    /// Creates a fresh cgroup, or says why this machine cannot give one.
    pub fn create() -> Result<TestCgroup, String> {
        if nix::unistd::getuid().as_raw() != 0 {
            return Err("creating cgroups needs root".into());
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "persistd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let own = own_cgroups()?;
        let mounts = cgroup_mounts()?;
        let mut made = TestCgroup { dirs: Vec::new() };
        if let Some(v1) = v1_parents(&own, &mounts) {
            for (kind, parent) in v1 {
                let dir = parent.join(&name);
                std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
                made.dirs.push((kind, dir));
            }
            return Ok(made);
        }
        let parent = v2_parent(&own, &mounts)?;
        let dir = parent.join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        made.dirs.push((CgroupDir::Unified, dir));
        Ok(made)
    }

    pub fn is_v2(&self) -> bool {
        matches!(self.dirs.as_slice(), [(CgroupDir::Unified, _)])
    }

    /// Fresh `O_DIRECTORY` fds of every directory, as the spawner sends them in `Watch`.
    pub fn open_dirs(&self) -> (Vec<CgroupDir>, Vec<OwnedFd>) {
        self.dirs
            .iter()
            .map(|(kind, dir)| {
                let fd = nix::fcntl::open(
                    dir.as_path(),
                    nix::fcntl::OFlag::O_RDONLY
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .unwrap();
                (*kind, fd)
            })
            .unzip()
    }

    pub fn dir(&self, kind: CgroupDir) -> &Path {
        &self
            .dirs
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("no such directory")
            .1
    }

    /// Makes `cmd` start inside the cgroup: the child joins before exec, so everything it
    /// ever uses is charged here (v1 does not move charges made before a move).
    pub fn run_inside(&self, cmd: &mut Command) {
        let procs: Vec<CString> = self
            .dirs
            .iter()
            .map(|(_, d)| CString::new(d.join("cgroup.procs").into_os_string().into_vec()).unwrap())
            .collect();
        // SAFETY: the closure runs in the forked child before exec and only calls open,
        // write and close (async-signal-safe) on C strings prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    // "0" names the writing process itself.
                    if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
    }

    /// Sets the mode of every directory (what the spawner's umask would have made them).
    pub fn chmod(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        for (_, dir) in &self.dirs {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    pub fn set_memory_limit(&self, bytes: u64) {
        let (kind, file) = if self.is_v2() {
            (CgroupDir::Unified, "memory.max")
        } else {
            (CgroupDir::Memory, "memory.limit_in_bytes")
        };
        std::fs::write(self.dir(kind).join(file), bytes.to_string()).unwrap();
    }

    /// Removes the cgroup now (as the spawner does once a job ended).
    pub fn remove(&mut self) {
        for (_, dir) in self.dirs.drain(..) {
            remove_dir(&dir);
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Kills what is left inside (only our own test processes can be there), then removes the
/// directory, retrying while the kernel finishes releasing them.
fn remove_dir(dir: &Path) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => return,
        }
    }
    eprintln!("could not remove test cgroup {}", dir.display());
}

/// `(controllers, path)` of each line of /proc/self/cgroup.
fn own_cgroups() -> Result<Vec<(Vec<String>, String)>, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.split(',').map(str::to_owned).collect();
            Some((controllers, parts.next()?.to_owned()))
        })
        .collect())
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    options: Vec<String>,
}

fn cgroup_mounts() -> Result<Vec<Mount>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let fstype = right.first()?.to_string();
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                root: left.get(3)?.to_string(),
                point: PathBuf::from(left.get(4)?),
                fstype,
                options: right.get(2)?.split(',').map(str::to_owned).collect(),
            })
        })
        .collect())
}

fn under(mount: &Mount, path: &str) -> PathBuf {
    let rel = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
    mount.point.join(rel.trim_start_matches('/'))
}

fn v1_parents(
    own: &[(Vec<String>, String)],
    mounts: &[Mount],
) -> Option<Vec<(CgroupDir, PathBuf)>> {
    V1.iter()
        .map(|(kind, controller)| {
            let (_, path) = own
                .iter()
                .find(|(c, _)| c.iter().any(|c| c == controller))?;
            let mount = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))?;
            Some((*kind, under(mount, path)))
        })
        .collect()
}

fn v2_parent(own: &[(Vec<String>, String)], mounts: &[Mount]) -> Result<PathBuf, String> {
    let (_, path) = own
        .iter()
        .find(|(c, _)| c.len() == 1 && c[0].is_empty())
        .ok_or("no v1 hierarchies and no cgroup v2 membership")?;
    let mount = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .ok_or("no cgroup2 mount")?;
    let parent = under(mount, path);
    let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    let missing: Vec<&str> = V2_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.split_whitespace().any(|a| a == *c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v2 at {} lacks the controllers {missing:?}",
            parent.display()
        ));
    }
    let enable: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
    std::fs::write(parent.join("cgroup.subtree_control"), enable.join(" ")).map_err(|e| {
        format!(
            "cannot enable {V2_CONTROLLERS:?} below {} (not the root cgroup?): {e}",
            parent.display()
        )
    })?;
    Ok(parent)
}
