//! A job's cgroup on v1: one directory per hierarchy, limits written at creation, and the
//! freeze-kill-thaw loop that empties it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::devices::V1_ALLOWED_DEVICES;
use super::error::CgroupError;
use super::limits::format_cpu_list;
use super::v1::missing;
use super::{CPU_PERIOD_US, KILL_PATIENCE, ResolvedLimits};
use super::{files, oom, signal};

/// How long a freeze may take before we signal anyway (tasks in uninterruptible sleep can
/// hold a cgroup in FREEZING).
const FREEZE_PATIENCE: Duration = Duration::from_millis(200);

pub(super) struct JobDir {
    pub(super) controllers: Vec<&'static str>,
    pub(super) path: PathBuf,
}

pub(super) struct Job {
    dirs: Vec<JobDir>,
}

impl Job {
    pub(super) fn new(dirs: Vec<JobDir>) -> Job {
        Job { dirs }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.controllers.contains(&controller))
            .map(|d| d.path.as_path())
    }

    fn need(&self, controller: &str) -> Result<&Path, CgroupError> {
        self.dir(controller)
            .ok_or_else(|| missing(controller.to_owned()))
    }

    pub(super) fn write_limits(
        &self,
        cpuset_base: Option<&Path>,
        limits: &ResolvedLimits,
    ) -> Result<(), CgroupError> {
        let devices = self.need("devices")?;
        files::write(&devices.join("devices.deny"), "a")?;
        for rule in V1_ALLOWED_DEVICES {
            files::write(&devices.join("devices.allow"), rule)?;
        }
        if let (Some(dir), Some(base)) = (self.dir("cpuset"), cpuset_base) {
            let mems = files::read(&base.join("cpuset.mems"))?;
            files::write(&dir.join("cpuset.mems"), mems.trim())?;
            let cpus = if limits.cpus.is_empty() {
                files::read(&base.join("cpuset.cpus"))?.trim().to_owned()
            } else {
                format_cpu_list(&limits.cpus)
            };
            files::write(&dir.join("cpuset.cpus"), &cpus)?;
        }
        if let Some(quota) = limits.cpu_quota_us() {
            let cpu = self.need("cpu")?;
            files::write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            files::write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if limits.memory_bytes > 0 {
            let memory = self.need("memory")?;
            let bytes = limits.memory_bytes.to_string();
            files::write(&memory.join("memory.limit_in_bytes"), &bytes)?;
            let memsw = memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                files::write(&memsw, &bytes)?;
            }
        }
        files::write(
            &self.need("pids")?.join("pids.max"),
            &limits.pids_max.to_string(),
        )?;
        if !limits.io.is_empty() {
            let blkio = self.need("blkio")?;
            for l in &limits.io {
                let rule = format!("{}:{} {}", l.major, l.minor, l.bps);
                files::write(&blkio.join("blkio.throttle.read_bps_device"), &rule)?;
                files::write(&blkio.join("blkio.throttle.write_bps_device"), &rule)?;
            }
        }
        Ok(())
    }

    pub(super) fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            files::attach(&d.path, pid)?;
        }
        Ok(())
    }

    /// Members of any of the job's hierarchies: a process half-attached still belongs to it.
    pub(super) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for d in &self.dirs {
            pids.extend(files::procs(&d.path)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Without a freezer directory (a job adopted half-created) the loop still works, only
    /// racing with forks, which the next pass catches.
    pub(super) fn kill_all(&self) -> Result<(), CgroupError> {
        let freezer = self.dir("freezer");
        let deadline = Instant::now() + KILL_PATIENCE;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let path = freezer.map(Path::to_owned);
                let path = path.or_else(|| self.dirs.first().map(|d| d.path.clone()));
                return Err(CgroupError::NotEmpty {
                    path: path.unwrap_or_default(),
                });
            }
            {
                // Frozen tasks cannot fork or exit, so the list stays complete and exact
                // while we kill; thawing (on drop) lets the kills take effect.
                let _frozen = freezer.map(Frozen::freeze).transpose()?;
                signal::signal_members(&pids, || self.pids(), Signal::SIGKILL)?;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(super) fn oom_kills(&self) -> Result<u64, CgroupError> {
        files::read_keyed(&self.need("memory")?.join("memory.oom_control"), "oom_kill")
    }

    pub(super) fn oom_watch(&self) -> Result<OwnedFd, CgroupError> {
        oom::watch_v1(self.need("memory")?)
    }

    pub(super) fn cpu_throttling(&self) -> Result<(u64, u64, u64), CgroupError> {
        let path = self.need("cpu")?.join("cpu.stat");
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
            get("throttled_time")? / 1000,
        ))
    }

    pub(super) fn cpu_usage_usec(&self) -> Result<u64, CgroupError> {
        let path = self.need("cpuacct")?.join("cpuacct.usage");
        let text = files::read(&path)?;
        let ns: u64 = text.trim().parse().map_err(|_| CgroupError::Parse {
            path,
            detail: format!("{:?} is not a number", text.trim()),
        })?;
        Ok(ns / 1000)
    }

    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Removes every directory, trying all of them; reports the first failure.
    pub(super) fn remove(self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in &self.dirs {
            if let Err(e) = files::remove_dir(&d.path) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A frozen v1 freezer cgroup, thawed on drop (also on every error path).
struct Frozen<'a> {
    dir: &'a Path,
}

impl<'a> Frozen<'a> {
    fn freeze(dir: &'a Path) -> Result<Frozen<'a>, CgroupError> {
        let state = dir.join("freezer.state");
        files::write(&state, "FROZEN")?;
        let frozen = Frozen { dir };
        let deadline = Instant::now() + FREEZE_PATIENCE;
        while files::read(&state)?.trim() != "FROZEN" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(frozen)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(e) = files::write(&self.dir.join("freezer.state"), "THAWED") {
            tracing::error!(error = %e, "could not thaw a job cgroup");
        }
    }
}
