//! The cgroup v1 driver: one directory per hierarchy, for hosts that only have v1
//! controllers. Hierarchies come from mountinfo (co-mounted controllers such as
//! `cpu,cpuacct` share one directory); named hierarchies and cgroup2 mounts are ignored.

use std::path::{Path, PathBuf};

use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::settings::CgroupMode;

use super::error::CgroupError;
use super::limits::Capabilities;
use super::mountinfo::{self, Membership, Mount};
use super::v1_job::{Job, JobDir};
use super::{HostResources, ResolvedLimits};
use super::{files, host};

const KNOWN: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];
const REQUIRED: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "devices", "freezer"];

/// One mounted hierarchy: its controllers, our own cgroup in it, and our base below that.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    controllers: Vec<&'static str>,
    own: PathBuf,
    base: PathBuf,
}

pub(super) struct Driver {
    hierarchies: Vec<Hierarchy>,
}

impl Driver {
    pub(super) fn open(
        root: &Path,
        base: &str,
    ) -> Result<(Driver, HostResources, Capabilities), CgroupError> {
        let mounts = mountinfo::read_mounts()?;
        let members = mountinfo::read_memberships()?;
        let hierarchies = find_hierarchies(&mounts, &members, root, base)?;
        let driver = Driver { hierarchies };
        let mut created = Vec::new();
        match driver.prepare_base(&mut created) {
            Ok((host, caps)) => Ok((driver, host, caps)),
            Err(e) => {
                files::undo_created(&created);
                Err(e)
            }
        }
    }

    fn prepare_base(
        &self,
        created: &mut Vec<PathBuf>,
    ) -> Result<(HostResources, Capabilities), CgroupError> {
        for h in &self.hierarchies {
            if files::ensure_dir(&h.base)? {
                created.push(h.base.clone());
            }
        }
        if let Some(h) = self.hierarchy("cpuset") {
            copy_cpuset_down(&h.own, &h.base)?;
        }
        let effective = match self.hierarchy("cpuset") {
            Some(h) => Some(files::read(&h.own.join("cpuset.effective_cpus"))?),
            None => None,
        };
        let memory = self.required("memory")?;
        let own_limit = files::read(&memory.own.join("memory.limit_in_bytes"))?
            .trim()
            .parse::<u64>()
            .ok();
        let host = host::resources(effective.as_deref(), own_limit)?;
        let caps = Capabilities {
            cpuset: self.hierarchy("cpuset").is_some(),
            io: self.hierarchy("blkio").is_some(),
            swap_limit: memory.base.join("memory.memsw.limit_in_bytes").exists(),
            host_swap: host::has_swap()?,
        };
        Ok((host, caps))
    }

    fn hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.contains(&controller))
    }

    fn required(&self, controller: &str) -> Result<&Hierarchy, CgroupError> {
        self.hierarchy(controller)
            .ok_or_else(|| missing(controller.to_owned()))
    }

    pub(super) fn base_paths(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.base.clone()).collect()
    }

    pub(super) fn create(&self, job: &JobId, limits: &ResolvedLimits) -> Result<Job, CgroupError> {
        if !limits.cpus.is_empty() && self.hierarchy("cpuset").is_none() {
            return Err(unavailable("cpu_cores", "cpuset"));
        }
        if !limits.io.is_empty() && self.hierarchy("blkio").is_none() {
            return Err(unavailable("max_io_bps", "blkio"));
        }
        let name = files::job_dir_name(job);
        let mut created = Vec::new();
        for h in &self.hierarchies {
            let dir = h.base.join(&name);
            if let Err(e) = files::create_dir(&dir) {
                files::undo_created(&created);
                return Err(e);
            }
            created.push(dir);
        }
        let job = Job::new(
            self.hierarchies
                .iter()
                .map(|h| JobDir {
                    controllers: h.controllers.clone(),
                    path: h.base.join(&name),
                })
                .collect(),
        );
        let cpuset_base = self.hierarchy("cpuset").map(|h| h.base.as_path());
        if let Err(e) = job.write_limits(cpuset_base, limits) {
            files::undo_created(&created);
            return Err(e);
        }
        Ok(job)
    }

    pub(super) fn adopt(&self, job: &JobId) -> Option<Job> {
        let name = files::job_dir_name(job);
        let dirs: Vec<JobDir> = self
            .hierarchies
            .iter()
            .map(|h| JobDir {
                controllers: h.controllers.clone(),
                path: h.base.join(&name),
            })
            .filter(|d| d.path.is_dir())
            .collect();
        if dirs.is_empty() {
            return None;
        }
        if dirs.len() != self.hierarchies.len() {
            tracing::warn!(job = %job, present = dirs.len(), expected = self.hierarchies.len(),
                "job cgroup exists in only some hierarchies (creation cut short)");
        }
        Some(Job::new(dirs))
    }

    pub(super) fn list(&self) -> Result<Vec<JobId>, CgroupError> {
        let mut jobs = Vec::new();
        for h in &self.hierarchies {
            jobs.extend(files::list_jobs(&h.base)?);
        }
        Ok(jobs)
    }

    pub(super) fn remove_base(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            if h.base.is_dir() && !files::list_jobs(&h.base)?.is_empty() {
                return Err(CgroupError::NotEmpty {
                    path: h.base.clone(),
                });
            }
        }
        for h in &self.hierarchies {
            files::remove_dir(&h.base)?;
        }
        Ok(())
    }
}

/// The v1 hierarchies below `root` that carry controllers we use, with our own cgroup in
/// each and the base directory we will use there. Fails when a required one is missing.
fn find_hierarchies(
    mounts: &[Mount],
    members: &[Membership],
    root: &Path,
    base: &str,
) -> Result<Vec<Hierarchy>, CgroupError> {
    let mut found: Vec<Hierarchy> = Vec::new();
    let v1_mounts = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && mountinfo::is_under(&m.mount_point, root));
    for m in v1_mounts {
        let controllers = mountinfo::v1_controllers(m, &KNOWN);
        let seen = found
            .iter()
            .any(|h| h.controllers.iter().any(|c| controllers.contains(c)));
        if controllers.is_empty() || seen {
            continue;
        }
        let joined = controllers.join(",");
        let member = members
            .iter()
            .find(|mb| {
                mb.hierarchy_id != 0
                    && mb
                        .controllers
                        .iter()
                        .any(|c| controllers.contains(&c.as_str()))
            })
            .ok_or_else(|| CgroupError::OwnCgroup {
                detail: format!("{} has no line for {joined}", mountinfo::SELF_CGROUP),
            })?;
        let own = mountinfo::own_dir(m, &member.path).ok_or_else(|| CgroupError::OwnCgroup {
            detail: format!(
                "our {joined} cgroup {} is not visible under the mount {}",
                member.path,
                m.mount_point.display()
            ),
        })?;
        found.push(Hierarchy {
            controllers,
            base: own.join(base),
            own,
        });
    }
    if found.is_empty() {
        return Err(CgroupError::Mount {
            detail: format!(
                "no cgroup v1 hierarchy is mounted below {} (cgroup mode V1 configured; a \
                 host with only cgroup2 needs mode V2)",
                root.display()
            ),
        });
    }
    let absent: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !found.iter().any(|h| h.controllers.contains(c)))
        .collect();
    if !absent.is_empty() {
        return Err(missing(absent.join(", ")));
    }
    Ok(found)
}

/// A new v1 cpuset has no CPUs and no memory nodes, and takes no task until it has both.
fn copy_cpuset_down(own: &Path, base: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = files::read(&base.join(file))?;
        if current.trim().is_empty() {
            let parent = files::read(&own.join(file))?;
            files::write(&base.join(file), parent.trim())?;
        }
    }
    Ok(())
}

pub(super) fn missing(controller: String) -> CgroupError {
    CgroupError::MissingController {
        controller,
        mode: CgroupMode::V1,
    }
}

fn unavailable(limit: &'static str, controller: &str) -> CgroupError {
    CgroupError::LimitUnavailable {
        limit,
        detail: format!("the {controller} controller is not available to joblet on this host"),
    }
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

    #[test]
    fn finds_co_mounted_hierarchies_and_our_place_in_them() {
        let h = find_hierarchies(
            &parse_mountinfo(MOUNTS),
            &parse_proc_cgroup(SELF),
            Path::new("/sys/fs/cgroup"),
            "joblet",
        )
        .unwrap();
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
        let err = find_hierarchies(
            &parse_mountinfo(&mounts),
            &parse_proc_cgroup(SELF),
            Path::new("/sys/fs/cgroup"),
            "joblet",
        )
        .unwrap_err();
        match err {
            CgroupError::MissingController { controller, mode } => {
                assert_eq!(controller, "pids, freezer");
                assert_eq!(mode, CgroupMode::V1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pure_v2_host_is_not_a_v1_host() {
        let mounts = parse_mountinfo("41 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let err = find_hierarchies(
            &mounts,
            &parse_proc_cgroup("0::/\n"),
            Path::new("/sys/fs/cgroup"),
            "joblet",
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::Mount { .. }), "{err:?}");
    }
}
