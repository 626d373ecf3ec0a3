//! Picking jobs up again after a spawner restart (or a crash: a SIGKILLed spawner must not
//! kill a running job or lose its exit status).
//!
//! For each record directory: a live shim (its pid *and* start time match the record, so a
//! reused pid is never mistaken for it) gives back the output pipes and its status pipe
//! through `pidfd_getfd`; then the shim's `started` and `exit` records say where the job is,
//! exactly as they do for a job of this run. A record with neither a live shim nor an exit
//! record is reported `Lost` after killing whatever is left in its cgroup. Job cgroups with no
//! record at all are emptied and removed. The user-namespace slot in each record stays taken.

use std::os::fd::AsFd;

use joblet_ipc_proto::job::{JobId, JobOutcome};

use crate::daemon::Spawner;
use crate::launch::{ShimFds, set_nonblocking};
use crate::record::{self, JOB, JobDir, ProcRef, RecordError};
use crate::registry::{Job, ShimLink};
use crate::{clock, sys};

/// Takes over a live shim matching the record, with copies of its output pipes.
fn adopt_shim(job: &mut Job, r: ProcRef) -> Option<()> {
    let pidfd = sys::pidfd_open(r.pid).ok()?;
    // Opened before the start time is read: if the pid was reused in between, the start time
    // differs and the pidfd is dropped.
    if sys::proc_start_ticks(r.pid).ok()? != r.start_ticks || sys::pidfd_exited(pidfd.as_fd()) {
        return None;
    }
    let take = |fd| sys::pidfd_getfd(pidfd.as_fd(), fd);
    let status = take(ShimFds::STATUS).ok()?;
    set_nonblocking(status.as_fd()).ok()?;
    job.pipes = take(ShimFds::STDOUT)
        .and_then(|o| Ok((o, take(ShimFds::STDERR)?)))
        .ok();
    job.shim = Some(ShimLink {
        pidfd,
        status: Some(status),
        child: false,
    });
    Some(())
}

impl Spawner {
    /// Re-adopts every job on record and cleans up leftover cgroups.
    pub fn adopt_all(&mut self) -> Result<(), RecordError> {
        let (ids, strays) = record::scan(&self.jobs_dir)?;
        for s in strays {
            tracing::warn!(name = %s, "ignoring a stray entry in the jobs directory");
        }
        for id in &ids {
            self.adopt_one(id);
        }
        let leftovers = crate::logged(self.cgroups.list(), "list job cgroups");
        for id in leftovers.iter().filter(|id| !self.jobs.contains_key(*id)) {
            tracing::warn!(job = %id, "removing a leftover job cgroup with no record");
            let removed = self.cgroups.adopt(id).and_then(|cg| match cg {
                Some(cg) => cg.kill_all().and_then(|()| cg.remove()),
                None => Ok(()),
            });
            if let Err(e) = removed {
                tracing::error!(job = %id, error = %e, "cannot remove a leftover cgroup");
            }
        }
        if !ids.is_empty() {
            tracing::info!(jobs = ids.len(), "adopted jobs after a restart");
        }
        Ok(())
    }

    fn adopt_one(&mut self, id: &JobId) {
        let dir = JobDir::new(&self.jobs_dir, id);
        let file = crate::logged(dir.read(JOB), format_args!("read the record of {id}"));
        let cgroup = crate::logged(
            self.cgroups.adopt(id),
            format_args!("adopt the cgroup of {id}"),
        );
        let mut job = Job::new(id.clone(), dir, file.unwrap_or_default(), cgroup, None);
        if let Some(r) = job.file.shim {
            adopt_shim(&mut job, r);
        }
        let has_shim = job.shim.is_some();
        self.jobs.insert(id.clone(), job);
        self.refresh(id);
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        match (job.exited(), has_shim) {
            (Some((o, _)), _) => {
                tracing::info!(job = %id, reason = o.reason.as_str(), "adopted an ended job")
            }
            (None, true) => {
                tracing::info!(job = %id, running = job.started.is_some(), "adopted a job")
            }
            (None, false) => {
                if let Some(cg) = &job.cgroup {
                    let _ = cg.kill_all();
                }
                tracing::error!(job = %id, "no live shim and no exit record: job lost");
                let why =
                    "the spawner restarted and found neither the job's shim nor its exit status";
                self.end_job(id, JobOutcome::lost(why), clock::realtime_ns());
            }
        }
    }
}
