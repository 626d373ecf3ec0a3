//! The cgroup v2 driver: one unified hierarchy, controllers delegated down to our base.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::settings::CgroupMode;
use nix::sys::signal::Signal;

use super::error::CgroupError;
use super::limits::{Capabilities, format_cpu_list};
use super::mountinfo::{self, Mount};
use super::{CPU_PERIOD_US, HostResources, KILL_PATIENCE, ResolvedLimits};
use super::{files, host, oom, signal};

const REQUIRED: [&str; 3] = ["cpu", "memory", "pids"];
const OPTIONAL: [&str; 2] = ["cpuset", "io"];
/// The leaf our own cgroup's processes move to when controllers must be enabled below it.
pub(super) const DAEMONS_LEAF: &str = "joblet-daemons";

pub(super) struct Driver {
    base: PathBuf,
    /// Controllers enabled for our jobs.
    controllers: Vec<&'static str>,
}

impl Driver {
    pub(super) fn open(
        root: &Path,
        base: &str,
    ) -> Result<(Driver, HostResources, Capabilities), CgroupError> {
        let mounts = mountinfo::read_mounts()?;
        let mount = find_mount(&mounts, root)?;
        let own = own_cgroup(mount)?;
        // Only non-root cgroups have cgroup.type; the root is exempt from the
        // no-internal-process rule (a cgroup namespace root is not).
        let is_root = !own.join("cgroup.type").exists();
        let available = controllers(&own.join("cgroup.controllers"))?;
        let absent: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| !available.iter().any(|a| a == c))
            .collect();
        if !absent.is_empty() {
            return Err(CgroupError::MissingController {
                controller: absent.join(", "),
                mode: CgroupMode::V2,
            });
        }
        let wanted: Vec<&'static str> = REQUIRED
            .iter()
            .chain(OPTIONAL.iter())
            .copied()
            .filter(|c| available.iter().any(|a| a == c))
            .collect();
        for c in OPTIONAL.iter().filter(|c| !wanted.contains(c)) {
            tracing::warn!(controller = c, cgroup = %own.display(),
                "optional controller not delegated to us; limits needing it will be refused");
        }
        enable_controllers(&own, &wanted, !is_root)?;
        let base_dir = own.join(base);
        let created = files::ensure_dir(&base_dir)?;
        let prepared = enable_controllers(&base_dir, &wanted, false)
            .and_then(|()| host_view(&own, &base_dir, &wanted));
        match prepared {
            Ok((host, caps)) => {
                let driver = Driver {
                    base: base_dir,
                    controllers: wanted,
                };
                Ok((driver, host, caps))
            }
            Err(e) => {
                if created {
                    files::undo_created(&[base_dir]);
                }
                Err(e)
            }
        }
    }

    pub(super) fn base_path(&self) -> &Path {
        &self.base
    }

    pub(super) fn create(&self, job: &JobId, limits: &ResolvedLimits) -> Result<Job, CgroupError> {
        for (needed, controller, limit) in [
            (!limits.cpus.is_empty(), "cpuset", "cpu_cores"),
            (!limits.io.is_empty(), "io", "max_io_bps"),
        ] {
            if needed && !self.controllers.contains(&controller) {
                return Err(CgroupError::LimitUnavailable {
                    limit,
                    detail: format!("the {controller} controller is not delegated to joblet"),
                });
            }
        }
        let dir = self.base.join(files::job_dir_name(job));
        files::create_dir(&dir)?;
        let written = open_dir(&dir).and_then(|fd| {
            let job = Job {
                dir: dir.clone(),
                fd,
            };
            job.write_limits(limits).map(|()| job)
        });
        if written.is_err() {
            files::undo_created(&[dir]);
        }
        written
    }

    pub(super) fn adopt(&self, job: &JobId) -> Result<Option<Job>, CgroupError> {
        let dir = self.base.join(files::job_dir_name(job));
        if !dir.is_dir() {
            return Ok(None);
        }
        let fd = open_dir(&dir)?;
        Ok(Some(Job { dir, fd }))
    }

    pub(super) fn list(&self) -> Result<Vec<JobId>, CgroupError> {
        files::list_jobs(&self.base)
    }

    pub(super) fn remove_base(&self) -> Result<(), CgroupError> {
        if self.base.is_dir() && !files::list_jobs(&self.base)?.is_empty() {
            return Err(CgroupError::NotEmpty {
                path: self.base.clone(),
            });
        }
        files::remove_dir(&self.base)
    }
}

fn find_mount<'a>(mounts: &'a [Mount], root: &Path) -> Result<&'a Mount, CgroupError> {
    if let Some(m) = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2" && m.mount_point == root)
    {
        return Ok(m);
    }
    let v1_below = mounts
        .iter()
        .any(|m| m.fstype == "cgroup" && mountinfo::is_under(&m.mount_point, root));
    Err(CgroupError::Mount {
        detail: format!(
            "{} is not a cgroup2 mount (cgroup mode V2 configured){}",
            root.display(),
            if v1_below {
                "; cgroup v1 hierarchies are mounted below it, so this host needs mode V1"
            } else {
                ""
            }
        ),
    })
}

fn own_cgroup(mount: &Mount) -> Result<PathBuf, CgroupError> {
    let members = mountinfo::read_memberships()?;
    let member = members
        .iter()
        .find(|m| m.hierarchy_id == 0)
        .ok_or_else(|| CgroupError::OwnCgroup {
            detail: format!("{} has no cgroup v2 line", mountinfo::SELF_CGROUP),
        })?;
    mountinfo::own_dir(mount, &member.path).ok_or_else(|| CgroupError::OwnCgroup {
        detail: format!(
            "our cgroup {} is not visible under {}",
            member.path,
            mount.mount_point.display()
        ),
    })
}

fn controllers(path: &Path) -> Result<Vec<String>, CgroupError> {
    Ok(files::read(path)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Enables `wanted` in `dir/cgroup.subtree_control`. A non-root cgroup with processes cannot
/// (no internal processes), so with `move_members` those first move to the leaf
/// [`DAEMONS_LEAF`]; without it (our base, which holds no process) the kernel's refusal is
/// reported.
fn enable_controllers(dir: &Path, wanted: &[&str], move_members: bool) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = controllers(&control)?;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !enabled.iter().any(|e| e == w))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if move_members {
        move_members_to_leaf(dir)?;
    }
    let value: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    files::write(&control, &value.join(" "))?;
    tracing::info!(cgroup = %dir.display(), controllers = ?missing, "enabled controllers");
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
                Err(CgroupError::Attach { source, .. })
                    if source.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Err(CgroupError::NotEmpty {
        path: dir.to_owned(),
    })
}

fn host_view(
    own: &Path,
    base: &Path,
    wanted: &[&str],
) -> Result<(HostResources, Capabilities), CgroupError> {
    let cpuset = wanted.contains(&"cpuset");
    let effective = match cpuset {
        true => files::read_optional(&own.join("cpuset.cpus.effective"))?,
        false => None,
    };
    let own_limit =
        files::read_optional(&own.join("memory.max"))?.and_then(|v| v.trim().parse::<u64>().ok());
    let host = host::resources(effective.as_deref(), own_limit)?;
    let caps = Capabilities {
        cpuset,
        io: wanted.contains(&"io"),
        swap_limit: base.join("memory.swap.max").exists(),
        host_swap: host::has_swap()?,
    };
    Ok((host, caps))
}

fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    // A real read-only open (not O_PATH): clone3 refuses O_PATH descriptors.
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::Open {
            path: dir.to_owned(),
            source,
        })
}

pub(super) struct Job {
    dir: PathBuf,
    fd: OwnedFd,
}

impl Job {
    fn write_limits(&self, limits: &ResolvedLimits) -> Result<(), CgroupError> {
        let d = &self.dir;
        if let Some(quota) = limits.cpu_quota_us() {
            files::write(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        if !limits.cpus.is_empty() {
            files::write(&d.join("cpuset.cpus"), &format_cpu_list(&limits.cpus))?;
        }
        if limits.memory_bytes > 0 {
            files::write(&d.join("memory.max"), &limits.memory_bytes.to_string())?;
        }
        // Jobs never swap, limited or not; absent when the kernel has no swap accounting
        // (resolve refuses memory limits then if the host has swap).
        let swap = d.join("memory.swap.max");
        if swap.exists() {
            files::write(&swap, "0")?;
        }
        files::write(&d.join("memory.oom.group"), "1")?;
        files::write(&d.join("pids.max"), &limits.pids_max.to_string())?;
        for l in &limits.io {
            let rule = format!("{}:{} rbps={} wbps={}", l.major, l.minor, l.bps, l.bps);
            files::write(&d.join("io.max"), &rule)?;
        }
        Ok(())
    }

    pub(super) fn dir_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    pub(super) fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        files::attach(&self.dir, pid)
    }

    pub(super) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = files::procs(&self.dir)?;
        pids.sort_unstable();
        Ok(pids)
    }

    /// `populated` covers the cgroup and its descendants and ignores zombies.
    pub(super) fn is_empty(&self) -> Result<bool, CgroupError> {
        let populated = files::read_keyed(&self.dir.join("cgroup.events"), "populated")?;
        Ok(populated == 0)
    }

    pub(super) fn kill_all(&self) -> Result<(), CgroupError> {
        let kill = self.dir.join("cgroup.kill");
        let has_kill = kill.exists();
        let deadline = Instant::now() + KILL_PATIENCE;
        loop {
            if self.is_empty()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::NotEmpty {
                    path: self.dir.clone(),
                });
            }
            if has_kill {
                files::write(&kill, "1")?;
            } else {
                // Before Linux 5.14: SIGKILL reaches frozen-or-not v2 tasks; repeat for forks.
                let pids = self.pids()?;
                signal::signal_members(&pids, || self.pids(), Signal::SIGKILL)?;
            }
            self.wait_empty(Duration::from_millis(500))?;
        }
    }

    fn wait_empty(&self, patience: Duration) -> Result<(), CgroupError> {
        let until = Instant::now() + patience;
        while !self.is_empty()? && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub(super) fn oom_kills(&self) -> Result<u64, CgroupError> {
        files::read_keyed(&self.dir.join("memory.events"), "oom_kill")
    }

    pub(super) fn oom_watch(&self) -> Result<OwnedFd, CgroupError> {
        files::write(&self.dir.join("memory.oom.group"), "1")?;
        oom::watch_v2(&self.dir)
    }

    pub(super) fn cpu_throttling(&self) -> Result<(u64, u64, u64), CgroupError> {
        let path = self.dir.join("cpu.stat");
        let text = files::read(&path)?;
        let get = |key: &str| {
            files::keyed_value(&text, key).ok_or_else(|| CgroupError::Parse {
                path: path.clone(),
                detail: format!("no {key:?} entry"),
            })
        };
        Ok((
            get("nr_periods")?,
            get("nr_throttled")?,
            get("throttled_usec")?,
        ))
    }

    pub(super) fn cpu_usage_usec(&self) -> Result<u64, CgroupError> {
        files::read_keyed(&self.dir.join("cpu.stat"), "usage_usec")
    }

    pub(super) fn remove(self) -> Result<(), CgroupError> {
        let Job { dir, fd } = self;
        drop(fd);
        files::remove_dir(&dir)
    }
}
