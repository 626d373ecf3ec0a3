//! The spawner's cgroups: one interface, two drivers.
//!
//! cgroup v2 is the target (production hosts); hosts that only have v1 controllers are
//! served by a v1 driver behind the same types. Which one runs is decided by the supervisor
//! ([`CgroupConfig::mode`]) and verified here against `/proc/self/mountinfo`.
//!
//! Layout: everything lives in our base subtree under the spawner's own cgroup, one per
//! hierarchy on v1: `<own>/<base>/job-<uuid>`. Nothing outside it is written, except enabling
//! controllers in our own cgroup's `cgroup.subtree_control` on v2 (moving the processes of our
//! own cgroup to the leaf `<own>/joblet-daemons` first when the no-internal-process rule
//! requires it) and, on v1, copying our cpuset down into the base.
//!
//! Required controllers: v1 cpu, cpuacct, memory, pids, devices, freezer; v2 cpu, memory,
//! pids. Optional: cpuset and blkio (v1) / io (v2); without them [`Cgroups::resolve`] refuses
//! pinned cores and io limits. On v2 there is no device controller: device access is
//! governed by the job's minimal `/dev`, its uid and its dropped capabilities.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use joblet_ipc_proto::job::{JobId, Limits};
use joblet_ipc_proto::settings::CgroupMode;
use nix::sys::signal::Signal;

mod devices;
mod error;
mod files;
mod host;
mod limits;
mod mountinfo;
mod oom;
mod signal;
mod v1;
mod v1_job;
mod v2;

pub use error::CgroupError;
pub use limits::Capabilities;

/// How long [`JobCgroup::kill_all`] keeps trying before it reports the cgroup not empty.
pub const KILL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupConfig {
    /// Normally `/sys/fs/cgroup`: the v2 mount point, or where the v1 hierarchies are mounted.
    pub root: PathBuf,
    /// What the supervisor detected; [`Cgroups::open`] verifies it.
    pub mode: CgroupMode,
    /// Our subtree's name, e.g. `joblet` (1-63 letters, digits, `_`, `-`).
    pub base: String,
}

/// What the host can offer jobs, read once at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResources {
    /// Online CPUs that our own cgroup may use.
    pub online_cpus: Vec<u32>,
    /// `MemTotal`, or our own cgroup's memory limit when that is lower.
    pub memory_bytes: u64,
}

/// Limits after defaults, in kernel units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedLimits {
    /// 0 = none; 100 = one core (period 100 ms, quota = percent * 1 ms).
    pub cpu_percent: u32,
    /// Empty = inherit all.
    pub cpus: Vec<u32>,
    /// 0 = none; swap is never granted on top (memsw / swap.max = 0).
    pub memory_bytes: u64,
    /// Read and write bytes per second per whole-disk device.
    pub io: Vec<IoLimit>,
    /// Always > 0.
    pub pids_max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IoLimit {
    pub major: u32,
    pub minor: u32,
    pub bps: u64,
}

/// CFS period used for CPU limits, microseconds.
const CPU_PERIOD_US: u64 = 100_000;

impl ResolvedLimits {
    /// The CFS quota for `cpu_percent`, microseconds per [`CPU_PERIOD_US`]; `None` = unlimited.
    fn cpu_quota_us(&self) -> Option<u64> {
        (self.cpu_percent > 0).then(|| u64::from(self.cpu_percent) * CPU_PERIOD_US / 100)
    }
}

enum Driver {
    V1(v1::Driver),
    V2(v2::Driver),
}

/// Our cgroup subtree, opened once at spawner start.
pub struct Cgroups {
    driver: Driver,
    host: HostResources,
    caps: Capabilities,
}

impl Cgroups {
    /// Verifies the mode, finds the hierarchies, creates our base subtree (see the module
    /// documentation). Errors name the missing controller or feature. Idempotent: opening
    /// again after a restart reuses the existing base and its job cgroups.
    pub fn open(cfg: &CgroupConfig) -> Result<Cgroups, CgroupError> {
        validate_base(&cfg.base)?;
        let (driver, host, caps) = match cfg.mode {
            CgroupMode::V1 => {
                let (d, h, c) = v1::Driver::open(&cfg.root, &cfg.base)?;
                (Driver::V1(d), h, c)
            }
            CgroupMode::V2 => {
                let (d, h, c) = v2::Driver::open(&cfg.root, &cfg.base)?;
                (Driver::V2(d), h, c)
            }
        };
        tracing::info!(
            mode = ?cfg.mode,
            base = %cfg.base,
            cpus = ?host.online_cpus,
            memory_bytes = host.memory_bytes,
            cpuset = caps.cpuset,
            io = caps.io,
            swap_limit = caps.swap_limit,
            "cgroups ready"
        );
        Ok(Cgroups { driver, host, caps })
    }

    pub fn mode(&self) -> CgroupMode {
        match self.driver {
            Driver::V1(_) => CgroupMode::V1,
            Driver::V2(_) => CgroupMode::V2,
        }
    }

    pub fn host(&self) -> &HostResources {
        &self.host
    }

    /// Optional features found at open (cpuset, io, swap accounting).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Our base directories (one per hierarchy on v1).
    pub fn base_paths(&self) -> Vec<PathBuf> {
        match &self.driver {
            Driver::V1(d) => d.base_paths(),
            Driver::V2(d) => vec![d.base_path().to_owned()],
        }
    }

    /// Turns request limits into kernel limits, refusing what the host cannot apply (CPU not
    /// online, more CPU than the usable cores, memory above the host's, cpuset or io without
    /// the controller, io limit with no device to apply it to, memory limit with unaccounted
    /// swap): a limit the host cannot apply is an error at submission, not a silently ignored
    /// setting. `io_devices` come from [`Cgroups::devices_backing`].
    pub fn resolve(
        &self,
        limits: &Limits,
        default_pids_max: u32,
        io_devices: &[(u32, u32)],
    ) -> Result<ResolvedLimits, CgroupError> {
        limits::resolve(&self.host, self.caps, limits, default_pids_max, io_devices)
    }

    /// Whole-disk devices (major, minor) backing the filesystems of `paths` (partitions mapped
    /// to their disk, device-mapper and loop devices to themselves); paths on tmpfs, overlay
    /// and other filesystems without a block device give none.
    pub fn devices_backing(paths: &[&Path]) -> Vec<(u32, u32)> {
        devices::backing(paths)
    }

    /// Creates the job's cgroup and writes every limit before anything runs in it (on v1 also
    /// the device allow-list). Refuses an existing cgroup of that name (use [`Cgroups::adopt`]).
    /// On any error removes what it created.
    pub fn create(&self, job: &JobId, limits: &ResolvedLimits) -> Result<JobCgroup, CgroupError> {
        let inner = match &self.driver {
            Driver::V1(d) => Job::V1(d.create(job, limits)?),
            Driver::V2(d) => Job::V2(d.create(job, limits)?),
        };
        tracing::debug!(job = %job, ?limits, "job cgroup created");
        Ok(JobCgroup {
            job: job.clone(),
            inner,
        })
    }

    /// Re-opens a job's cgroup after a spawner restart; `Ok(None)` if it does not exist. On v1
    /// a job present in only some hierarchies (a creation cut short by a crash) is returned
    /// with the directories that exist, so it can be emptied and removed.
    pub fn adopt(&self, job: &JobId) -> Result<Option<JobCgroup>, CgroupError> {
        let inner = match &self.driver {
            Driver::V1(d) => d.adopt(job).map(Job::V1),
            Driver::V2(d) => d.adopt(job)?.map(Job::V2),
        };
        Ok(inner.map(|inner| JobCgroup {
            job: job.clone(),
            inner,
        }))
    }

    /// Job ids of every job cgroup under our base (to find leftovers), sorted.
    pub fn list(&self) -> Result<Vec<JobId>, CgroupError> {
        let mut jobs = match &self.driver {
            Driver::V1(d) => d.list()?,
            Driver::V2(d) => d.list()?,
        };
        jobs.sort();
        jobs.dedup();
        Ok(jobs)
    }

    /// Removes our base subtree if it holds no job cgroup (clean shutdown); otherwise
    /// [`CgroupError::NotEmpty`] and nothing is removed.
    pub fn remove_base(&self) -> Result<(), CgroupError> {
        match &self.driver {
            Driver::V1(d) => d.remove_base(),
            Driver::V2(d) => d.remove_base(),
        }
    }
}

/// Which cgroup mode the host at `root` offers: V2 when `root` itself is a cgroup2 mount,
/// V1 when v1 hierarchies are mounted below it. For the supervisor and tests.
pub fn detect_mode(root: &Path) -> Result<CgroupMode, CgroupError> {
    let mounts = mountinfo::read_mounts()?;
    if mounts
        .iter()
        .any(|m| m.fstype == "cgroup2" && m.mount_point == root)
    {
        return Ok(CgroupMode::V2);
    }
    if mounts
        .iter()
        .any(|m| m.fstype == "cgroup" && mountinfo::is_under(&m.mount_point, root))
    {
        return Ok(CgroupMode::V1);
    }
    Err(CgroupError::Mount {
        detail: format!(
            "no cgroup filesystem is mounted at or below {}",
            root.display()
        ),
    })
}

fn validate_base(name: &str) -> Result<(), CgroupError> {
    joblet_ipc_proto::validate::name("cgroup base", name).map_err(|_| CgroupError::BaseName {
        name: name.to_owned(),
    })
}

enum Job {
    V1(v1_job::Job),
    V2(v2::Job),
}

/// One job's cgroup (one directory per hierarchy on v1).
pub struct JobCgroup {
    job: JobId,
    inner: Job,
}

impl JobCgroup {
    pub fn job(&self) -> &JobId {
        &self.job
    }

    /// v2: the cgroup directory fd for `clone3(CLONE_INTO_CGROUP)`. v1: `None`.
    pub fn clone_into_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner {
            Job::V1(_) => None,
            Job::V2(j) => Some(j.dir_fd()),
        }
    }

    /// Moves `pid` into this cgroup in every hierarchy (the v1 launch path; works on v2 too).
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.inner {
            Job::V1(j) => j.attach(pid),
            Job::V2(j) => j.attach(pid),
        }
    }

    /// The processes in the cgroup (on v1, in any of its hierarchies), sorted. Child cgroups
    /// are not searched: a job cannot create any (its directory belongs to root).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match &self.inner {
            Job::V1(j) => j.pids(),
            Job::V2(j) => j.pids(),
        }
    }

    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        match &self.inner {
            Job::V1(j) => Ok(j.pids()?.is_empty()),
            Job::V2(j) => j.is_empty(),
        }
    }

    /// Sends `sig` to every process in the cgroup. Processes are pinned with pidfds first,
    /// so a recycled pid is never hit.
    pub fn signal_all(&self, sig: Signal) -> Result<(), CgroupError> {
        let pids = self.pids()?;
        let sent = signal::signal_members(&pids, || self.pids(), sig)?;
        tracing::debug!(job = %self.job, signal = ?sig, processes = sent, "signalled job");
        Ok(())
    }

    /// Kills every process and waits (at most [`KILL_PATIENCE`]) until the cgroup is empty:
    /// v2 `cgroup.kill`; v1 freeze, SIGKILL every pid, thaw, repeat until empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        match &self.inner {
            Job::V1(j) => j.kill_all(),
            Job::V2(j) => j.kill_all(),
        }
    }

    /// OOM kills in this cgroup so far (v1 `memory.oom_control`, v2 `memory.events`).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match &self.inner {
            Job::V1(j) => j.oom_kills(),
            Job::V2(j) => j.oom_kills(),
        }
    }

    /// An fd that signals OOM events to a poll loop; poll it for
    /// [`JobCgroup::oom_watch_events`] and call [`JobCgroup::ack_oom_watch`] after each
    /// wake-up. v1: an eventfd (POLLIN); the spawner kills the whole job when it fires, and it
    /// also fires once when the cgroup is removed. v2: `memory.events` (POLLPRI), and
    /// `memory.oom.group` is set so the kernel kills the whole job. A wake-up is a hint:
    /// compare [`JobCgroup::oom_kills`].
    pub fn oom_watch(&self) -> Result<OwnedFd, CgroupError> {
        match &self.inner {
            Job::V1(j) => j.oom_watch(),
            Job::V2(j) => j.oom_watch(),
        }
    }

    /// The `poll(2)` events to wait for on the [`JobCgroup::oom_watch`] fd.
    pub fn oom_watch_events(&self) -> libc::c_short {
        match &self.inner {
            Job::V1(_) => libc::POLLIN,
            Job::V2(_) => libc::POLLPRI,
        }
    }

    /// Clears a fired [`JobCgroup::oom_watch`] fd so the next poll waits for a new event.
    pub fn ack_oom_watch(&self, fd: BorrowedFd<'_>) -> Result<(), CgroupError> {
        match &self.inner {
            Job::V1(_) => oom::ack_v1(fd),
            Job::V2(_) => oom::ack_v2(fd),
        }
    }

    /// Throttling statistics: (nr_periods, nr_throttled, throttled_usec).
    pub fn cpu_throttling(&self) -> Result<(u64, u64, u64), CgroupError> {
        match &self.inner {
            Job::V1(j) => j.cpu_throttling(),
            Job::V2(j) => j.cpu_throttling(),
        }
    }

    /// CPU time consumed by the job so far, microseconds (v1 `cpuacct.usage`, v2
    /// `cpu.stat usage_usec`).
    pub fn cpu_usage_usec(&self) -> Result<u64, CgroupError> {
        match &self.inner {
            Job::V1(j) => j.cpu_usage_usec(),
            Job::V2(j) => j.cpu_usage_usec(),
        }
    }

    /// Directory paths of this cgroup (one per hierarchy on v1).
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.inner {
            Job::V1(j) => j.paths(),
            Job::V2(j) => vec![j.path().to_owned()],
        }
    }

    /// Removes the job's directories (the cgroup must be empty; retries briefly on EBUSY).
    pub fn remove(self) -> Result<(), CgroupError> {
        let r = match self.inner {
            Job::V1(j) => j.remove(),
            Job::V2(j) => j.remove(),
        };
        if r.is_ok() {
            tracing::debug!(job = %self.job, "job cgroup removed");
        }
        r
    }
}
