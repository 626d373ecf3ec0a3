//! One job's cgroup: its limits and device policy, written at creation; its members; the kill
//! that empties it; its OOM counter; the directory fds handed to persistd for metrics.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use joblet_ipc_proto::{channel::output::CgroupDir, job::JobId, settings::CgroupMode};
use nix::sys::signal::Signal;

use super::error::{CgroupError, io_error, missing};
use super::{CPU_PERIOD_US, KILL_PATIENCE, ResolvedLimits, device_bpf, files, signal};

/// How long a v1 freeze may take before we signal anyway (tasks in uninterruptible sleep can
/// hold a cgroup in FREEZING).
const FREEZE_PATIENCE: Duration = Duration::from_millis(200);

/// The job's directory in one hierarchy.
pub(super) struct JobDir {
    pub(super) controllers: Vec<&'static str>,
    pub(super) path: PathBuf,
}

/// One job's cgroup (one directory per hierarchy on v1).
pub struct JobCgroup {
    job: JobId,
    mode: CgroupMode,
    dirs: Vec<JobDir>,
    /// v2: the directory, for `clone3(CLONE_INTO_CGROUP)` and the device program.
    fd: Option<OwnedFd>,
}

impl JobCgroup {
    pub(super) fn new(
        job: &JobId,
        mode: CgroupMode,
        dirs: Vec<JobDir>,
    ) -> Result<JobCgroup, CgroupError> {
        let fd = match (mode, dirs.first()) {
            (CgroupMode::V2, Some(d)) => Some(open_dir(&d.path)?),
            _ => None,
        };
        Ok(JobCgroup {
            job: job.clone(),
            mode,
            dirs,
            fd,
        })
    }

    fn dir(&self, controller: &str) -> Result<&Path, CgroupError> {
        self.dirs
            .iter()
            .find(|d| d.controllers.contains(&controller))
            .map(|d| d.path.as_path())
            .ok_or_else(|| missing(controller, self.mode))
    }

    /// Writes `value` to `file` in the directory of `controller`.
    fn set(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        files::write(&self.dir(controller)?.join(file), value)
    }

    /// Every limit, swap off, and on v2 the device program (v1: the base's policy, inherited).
    pub(super) fn apply(&self, l: &ResolvedLimits) -> Result<(), CgroupError> {
        let cpus = l.cpus.iter().map(u32::to_string).collect::<Vec<_>>();
        let cpus = cpus.join(",");
        let memory = l.memory_bytes.to_string();
        self.set("pids", "pids.max", &l.pids_max.to_string())?;
        if !cpus.is_empty() {
            // On v1 the new cpuset has the base's CPUs and memory nodes (`clone_children`).
            self.set("cpuset", "cpuset.cpus", &cpus)?;
        }
        match self.mode {
            CgroupMode::V1 => {
                if let Some(quota) = l.cpu_quota_us() {
                    self.set("cpu", "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                    self.set("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
                }
                if l.memory_bytes > 0 {
                    self.set("memory", "memory.limit_in_bytes", &memory)?;
                    let memsw = self.dir("memory")?.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        files::write(&memsw, &memory)?;
                    }
                }
                for io in &l.io {
                    let rule = format!("{}:{} {}", io.major, io.minor, io.bps);
                    self.set("blkio", "blkio.throttle.read_bps_device", &rule)?;
                    self.set("blkio", "blkio.throttle.write_bps_device", &rule)?;
                }
            }
            CgroupMode::V2 => {
                if let Some(quota) = l.cpu_quota_us() {
                    self.set("cpu", "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                if l.memory_bytes > 0 {
                    self.set("memory", "memory.max", &memory)?;
                }
                // Jobs never swap, limited or not; absent when the kernel has no swap
                // accounting (resolve refuses memory limits then if the host has swap).
                let swap = self.dir("memory")?.join("memory.swap.max");
                if swap.exists() {
                    files::write(&swap, "0")?;
                }
                // An OOM kill takes the whole job, so it ends together.
                self.set("memory", "memory.oom.group", "1")?;
                for io in &l.io {
                    let rule = format!("{}:{} rbps={} wbps={}", io.major, io.minor, io.bps, io.bps);
                    self.set("io", "io.max", &rule)?;
                }
                if let Some(fd) = &self.fd {
                    device_bpf::attach_device_filter(fd.as_fd())?;
                }
            }
        }
        Ok(())
    }

    /// v2: the cgroup directory fd for `clone3(CLONE_INTO_CGROUP)`. v1: `None`.
    pub fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// The processes in the cgroup (on v1, in any of its hierarchies: a process half-attached
    /// still belongs to it), sorted. Child cgroups are not searched: a job cannot create any
    /// (its directory belongs to root).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for d in &self.dirs {
            pids.extend(files::procs(&d.path)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// v2 `populated` covers the cgroup and its descendants and ignores zombies.
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        match self.mode {
            CgroupMode::V1 => Ok(self.pids()?.is_empty()),
            CgroupMode::V2 => {
                let events = self.dir("memory")?.join("cgroup.events");
                Ok(files::read_keyed(&events, "populated")? == 0)
            }
        }
    }

    /// Sends `sig` to every process in the cgroup. Processes are pinned with pidfds first,
    /// so a recycled pid is never hit.
    pub fn signal_all(&self, sig: Signal) -> Result<(), CgroupError> {
        let sent = signal::signal_members(&self.pids()?, || self.pids(), sig)?;
        tracing::debug!(job = %self.job, signal = ?sig, processes = sent, "signalled job");
        Ok(())
    }

    /// Kills every process and waits (at most [`KILL_PATIENCE`]) until the cgroup is empty:
    /// v2 `cgroup.kill`; v1 freeze, SIGKILL every pid, thaw, repeat. Without a freezer (a job
    /// adopted half-created) the loop still works, racing with forks that the next pass catches.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + KILL_PATIENCE;
        while !self.is_empty()? {
            if Instant::now() >= deadline {
                let path = self.paths().into_iter().next().unwrap_or_default();
                return Err(CgroupError::NotEmpty(path));
            }
            match (self.mode, self.dir("freezer")) {
                (CgroupMode::V2, _) => self.set("memory", "cgroup.kill", "1")?,
                (CgroupMode::V1, freezer) => {
                    // Frozen tasks cannot fork or exit, so the list stays complete and exact
                    // while we kill; thawing (on drop) lets the kills take effect.
                    let _frozen = freezer.ok().map(Frozen::freeze).transpose()?;
                    signal::signal_members(&self.pids()?, || self.pids(), Signal::SIGKILL)?;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// OOM kills in this cgroup so far (v1 `memory.oom_control`, v2 `memory.events`).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let file = match self.mode {
            CgroupMode::V1 => "memory.oom_control",
            CgroupMode::V2 => "memory.events",
        };
        files::read_keyed(&self.dir("memory")?.join(file), "oom_kill")
    }

    /// v1: an eventfd that becomes readable when the job reaches its memory limit
    /// (registered through `cgroup.event_control`), and fires at once if it already has; it
    /// also fires once when the cgroup is removed. Once it is registered the kernel's OOM
    /// killer is turned off for the job (`oom_kill_disable`): the job's tasks wait at the
    /// limit instead, and the spawner kills the whole job, as v2's `memory.oom.group` does.
    /// Without a watch (registration failed) the kernel keeps killing, one task at a time.
    /// v2: `None`, since `memory.oom.group` makes the kernel kill the whole job itself.
    pub fn oom_watch(&self) -> Result<Option<OwnedFd>, CgroupError> {
        if self.mode == CgroupMode::V2 {
            return Ok(None);
        }
        let memory = self.dir("memory")?;
        let control = memory.join("memory.oom_control");
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK);
        let efd = efd.map_err(|e| io_error("create an eventfd for", &control, e.into()))?;
        let watched = File::open(&control).map_err(|e| io_error("open", &control, e))?;
        // "<eventfd> <fd of the file to watch>"; the kernel takes its own references.
        let registration = format!("{} {}", efd.as_raw_fd(), watched.as_raw_fd());
        files::write(&memory.join("cgroup.event_control"), &registration)?;
        files::write(&control, "1")?;
        Ok(Some(OwnedFd::from(efd)))
    }

    /// v1: whether the job is at its memory limit now, waiting for the spawner's kill
    /// (`under_oom` of `memory.oom_control`); always false on v2.
    pub fn under_oom(&self) -> Result<bool, CgroupError> {
        if self.mode == CgroupMode::V2 {
            return Ok(false);
        }
        let control = self.dir("memory")?.join("memory.oom_control");
        Ok(files::read_keyed(&control, "under_oom")? != 0)
    }

    /// Clears a fired [`JobCgroup::oom_watch`] fd so the next poll waits for a new event.
    pub fn ack_oom_watch(&self, fd: BorrowedFd<'_>) -> Result<(), CgroupError> {
        match nix::unistd::read(fd, &mut [0u8; 8]) {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
            Err(e) => Err(io_error("read", Path::new("the OOM eventfd"), e.into())),
        }
    }

    /// Directory paths of this cgroup (one per hierarchy on v1).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Read-only directory fds for persistd's metrics: v2 the one directory, v1 those of the
    /// cpu, cpuacct, memory, blkio and pids hierarchies that exist (co-mounted ones twice).
    pub fn watch_dirs(&self) -> Result<Vec<(CgroupDir, OwnedFd)>, CgroupError> {
        let wanted: &[(CgroupDir, &str)] = match self.mode {
            CgroupMode::V2 => &[(CgroupDir::Unified, "memory")],
            CgroupMode::V1 => &[
                (CgroupDir::Cpu, "cpu"),
                (CgroupDir::Cpuacct, "cpuacct"),
                (CgroupDir::Memory, "memory"),
                (CgroupDir::Blkio, "blkio"),
                (CgroupDir::Pids, "pids"),
            ],
        };
        let mut out = Vec::new();
        for (kind, controller) in wanted {
            if let Ok(dir) = self.dir(controller) {
                out.push((*kind, open_dir(dir)?));
            }
        }
        Ok(out)
    }

    /// Removes every directory (the cgroup must be empty; retries briefly on EBUSY), trying
    /// all of them; reports the first failure.
    pub fn remove(self) -> Result<(), CgroupError> {
        drop(self.fd);
        let mut first = None;
        for d in &self.dirs {
            if let Err(e) = files::remove_dir(&d.path) {
                first.get_or_insert(e);
            }
        }
        tracing::debug!(job = %self.job, ok = first.is_none(), "job cgroup removed");
        first.map_or(Ok(()), Err)
    }
}

/// A real read-only open (not O_PATH): clone3 and bpf refuse O_PATH descriptors.
fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let flags = libc::O_DIRECTORY | libc::O_CLOEXEC;
    let dir_fd = File::options().read(true).custom_flags(flags).open(dir);
    Ok(OwnedFd::from(dir_fd.map_err(|e| io_error("open", dir, e))?))
}

/// A frozen v1 freezer cgroup, thawed on drop (also on every error path).
struct Frozen<'a>(&'a Path);

impl<'a> Frozen<'a> {
    fn freeze(dir: &'a Path) -> Result<Frozen<'a>, CgroupError> {
        let state = dir.join("freezer.state");
        files::write(&state, "FROZEN")?;
        let frozen = Frozen(dir);
        let deadline = Instant::now() + FREEZE_PATIENCE;
        while files::read(&state)?.trim() != "FROZEN" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(frozen)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(e) = files::write(&self.0.join("freezer.state"), "THAWED") {
            tracing::error!(error = %e, "could not thaw a job cgroup");
        }
    }
}
