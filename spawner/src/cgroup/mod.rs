//! The spawner's cgroups: one interface over cgroup v2 and v1.
//!
//! cgroup v2 is the target (production hosts); hosts that only have v1 controllers are
//! served behind the same types. Which one runs is decided by the supervisor
//! ([`CgroupConfig::mode`]) and verified here against `/proc/self/mountinfo`.
//!
//! Both are a list of hierarchies (v2: the one unified hierarchy; v1: one per mounted
//! controller set, co-mounted controllers such as `cpu,cpuacct` sharing one), and in each,
//! our base subtree under the spawner's own cgroup: `<own>/<base>/job-<uuid>`. Nothing outside
//! it is written, except enabling controllers in our own cgroup's `cgroup.subtree_control` on
//! v2 (moving the processes of our own cgroup to the leaf `<own>/joblet-daemons` first when
//! the no-internal-process rule requires it) and, on v1, copying our cpuset down into the base.
//!
//! Required controllers: v1 cpu, cpuacct, memory, pids, devices, freezer; v2 cpu, memory,
//! pids. Optional: cpuset and blkio (v1) / io (v2); without them [`Cgroups::resolve`] refuses
//! pinned cores and io limits.
//!
//! Devices: v1 has the devices controller: the allow-list is written once, on our base, and
//! the kernel copies a parent's list into every cgroup made under it, so each job's starts
//! with it (as, with `clone_children`, each job's v1 cpuset starts with the base's CPUs and
//! memory nodes): no file to write per job for either. v2 has none, so
//! [`device_bpf`] attaches a `BPF_PROG_TYPE_CGROUP_DEVICE` program with the same list to every
//! job cgroup when it is created, before any job process enters it. Both allow exactly the
//! nodes of the job's `/dev`.

use std::path::{Path, PathBuf};

use joblet_ipc_proto::job::{JobId, Limits};
use joblet_ipc_proto::settings::CgroupMode;

pub mod device_bpf;
mod devices;
mod error;
mod files;
mod job;
mod limits;
pub(crate) mod mountinfo;
mod open;
mod signal;

pub use error::CgroupError;
pub use job::JobCgroup;
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

/// One hierarchy we use: its controllers, our own cgroup in it, our base below that.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    controllers: Vec<&'static str>,
    own: PathBuf,
    base: PathBuf,
}

/// Our cgroup subtree, opened once at spawner start.
pub struct Cgroups {
    pub mode: CgroupMode,
    hierarchies: Vec<Hierarchy>,
    /// What the host can give jobs.
    pub host: HostResources,
    /// Optional features found at open (cpuset, io, swap accounting).
    pub caps: Capabilities,
}

impl Cgroups {
    /// Verifies the mode, finds the hierarchies, creates our base subtree (see the module
    /// documentation). Errors name the missing controller or feature. Idempotent: opening
    /// again after a restart reuses the existing base and its job cgroups.
    pub fn open(cfg: &CgroupConfig) -> Result<Cgroups, CgroupError> {
        let base_name = joblet_ipc_proto::validate::name("cgroup base", &cfg.base);
        base_name.map_err(|_| CgroupError::BaseName(cfg.base.clone()))?;
        let (hierarchies, host, caps) = open::open(cfg.mode, &cfg.root, &cfg.base)?;
        tracing::info!(mode = ?cfg.mode, base = %cfg.base, cpus = ?host.online_cpus,
            memory_bytes = host.memory_bytes, ?caps, "cgroups ready");
        Ok(Cgroups {
            mode: cfg.mode,
            hierarchies,
            host,
            caps,
        })
    }

    /// Our base directories (one per hierarchy on v1).
    pub fn base_paths(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.base.clone()).collect()
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

    /// Creates the job's cgroup and applies every limit and the device policy before anything
    /// runs in it. Refuses an existing cgroup of that name (use [`Cgroups::adopt`]). On any
    /// error removes what it created.
    pub fn create(&self, job: &JobId, limits: &ResolvedLimits) -> Result<JobCgroup, CgroupError> {
        let dirs = self.job_dirs(job);
        let mut created = Vec::new();
        let made = dirs.iter().try_for_each(|d| {
            files::create_dir(&d.path)?;
            created.push(d.path.clone());
            Ok(())
        });
        let made = made.and_then(|()| JobCgroup::new(job, self.mode, dirs));
        let made = made.and_then(|cg| cg.apply(limits).map(|()| cg));
        if made.is_err() {
            files::undo_created(&created);
        }
        tracing::debug!(%job, ?limits, ok = made.is_ok(), "job cgroup created");
        made
    }

    /// Re-opens a job's cgroup after a spawner restart; `Ok(None)` if it does not exist. On v1
    /// a job present in only some hierarchies (a creation cut short by a crash) is returned
    /// with the directories that exist, so it can be emptied and removed.
    pub fn adopt(&self, job: &JobId) -> Result<Option<JobCgroup>, CgroupError> {
        let all = self.job_dirs(job);
        let expected = all.len();
        let dirs: Vec<_> = all.into_iter().filter(|d| d.path.is_dir()).collect();
        if dirs.is_empty() {
            return Ok(None);
        }
        if dirs.len() != expected {
            tracing::warn!(%job, present = dirs.len(), expected,
                "job cgroup exists in only some hierarchies (creation cut short)");
        }
        JobCgroup::new(job, self.mode, dirs).map(Some)
    }

    /// Job ids of every job cgroup under our base (to find leftovers), sorted.
    pub fn list(&self) -> Result<Vec<JobId>, CgroupError> {
        let mut jobs = Vec::new();
        for h in &self.hierarchies {
            jobs.extend(files::list_jobs(&h.base)?);
        }
        jobs.sort();
        jobs.dedup();
        Ok(jobs)
    }

    /// Removes our base subtree if it holds no job cgroup (clean shutdown); otherwise
    /// [`CgroupError::NotEmpty`] and nothing is removed.
    pub fn remove_base(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            if h.base.is_dir() && files::list_jobs(&h.base).map_or(true, |j| !j.is_empty()) {
                return Err(CgroupError::NotEmpty(h.base.clone()));
            }
        }
        self.hierarchies
            .iter()
            .try_for_each(|h| files::remove_dir(&h.base))
    }

    /// v1: where [`Cgroups::create`] makes `job`'s directories, one per hierarchy.
    pub fn v1_paths(&self, job: &JobId) -> Option<Vec<PathBuf>> {
        let dirs = self.job_dirs(job).into_iter().map(|d| d.path);
        (self.mode == CgroupMode::V1).then(|| dirs.collect())
    }

    fn job_dirs(&self, job: &JobId) -> Vec<job::JobDir> {
        let name = format!("{}{job}", files::JOB_PREFIX);
        let dir = |h: &Hierarchy| job::JobDir {
            controllers: h.controllers.clone(),
            path: h.base.join(&name),
        };
        self.hierarchies.iter().map(dir).collect()
    }
}
