//! Picking jobs up again after a spawner restart (or a crash: a SIGKILLed spawner must not
//! kill a running job or lose its exit status).
//!
//! For each record directory: a live shim (its pid *and* start time match the record, so a
//! reused pid is never mistaken for it) gives back the output pipes, its status pipe and the
//! job's pidfd through `pidfd_getfd`; an exit record makes a pending exit event; a record with
//! neither is reported `Lost` after killing whatever is left in its cgroup. Job cgroups with no
//! record at all are emptied and removed.

use std::os::fd::{AsFd, OwnedFd};

use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome};

use crate::clock;
use crate::daemon::Spawner;
use crate::launch::{ShimFds, set_nonblocking};
use crate::lifecycle::LAUNCH_TIMEOUT_MS;
use crate::outcome;
use crate::record::{self, JobDir, JobFile, ProcRef, RecordError};
use crate::registry::{Attach, Job, Phase, ShimLink};
use crate::sys;

/// A live shim matching the record, and the handles taken from it.
struct Adopted {
    link: ShimLink,
    pipes: Option<(OwnedFd, OwnedFd)>,
}

fn live_shim(r: ProcRef) -> Option<Adopted> {
    let pidfd = sys::pidfd_open(r.pid).ok()?;
    // Opened before the start time is read: if the pid was reused in between, the start time
    // differs and the pidfd is dropped.
    if sys::proc_start_ticks(r.pid).ok()? != r.start_ticks || sys::pidfd_exited(pidfd.as_fd()) {
        return None;
    }
    let status = sys::pidfd_getfd(pidfd.as_fd(), ShimFds::STATUS).ok()?;
    set_nonblocking(status.as_fd()).ok()?;
    let pipes = sys::pidfd_getfd(pidfd.as_fd(), ShimFds::STDOUT)
        .and_then(|o| Ok((o, sys::pidfd_getfd(pidfd.as_fd(), ShimFds::STDERR)?)))
        .ok();
    Some(Adopted {
        link: ShimLink {
            pid: r.pid,
            pidfd,
            status: Some(status),
            reader: Default::default(),
            child: false,
        },
        pipes,
    })
}

impl Spawner {
    /// Re-adopts every job on record and cleans up leftover cgroups.
    pub fn adopt_all(&mut self) -> Result<(), RecordError> {
        let (ids, strays) = record::scan(&self.jobs_dir)?;
        for s in strays {
            tracing::warn!(name = %s, "ignoring a stray entry in the jobs directory");
        }
        for id in &ids {
            let job = self.adopt_one(id);
            self.jobs.insert(id.clone(), job);
        }
        match self.cgroups.list() {
            Ok(found) => {
                for id in found.iter().filter(|id| !self.jobs.contains_key(*id)) {
                    tracing::warn!(job = %id, "removing a leftover job cgroup with no record");
                    match self.cgroups.adopt(id) {
                        Ok(Some(cg)) => {
                            let _ = cg.kill_all();
                            if let Err(e) = cg.remove() {
                                tracing::error!(job = %id, error = %e, "cannot remove a leftover cgroup");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(job = %id, error = %e, "cannot open a leftover cgroup")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list job cgroups"),
        }
        if !ids.is_empty() {
            tracing::info!(jobs = ids.len(), "adopted jobs after a restart");
        }
        Ok(())
    }

    fn adopt_one(&mut self, id: &JobId) -> Job {
        let dir = JobDir::new(&self.jobs_dir, id);
        let warn = |what: &str, e: &RecordError| tracing::error!(job = %id, error = %e, "cannot read the {what} record");
        let file = match dir.read_job() {
            Ok(Some(f)) if f.job == *id => f,
            Ok(_) => JobFile {
                job: id.clone(),
                created_ns: 0,
                timeout_at: 0,
                shim: None,
                stop: None,
            },
            Err(e) => {
                warn("job", &e);
                JobFile {
                    job: id.clone(),
                    created_ns: 0,
                    timeout_at: 0,
                    shim: None,
                    stop: None,
                }
            }
        };
        let exit = dir.read_exit().unwrap_or_else(|e| {
            warn("exit", &e);
            None
        });
        let started = dir.read_started().unwrap_or_else(|e| {
            warn("started", &e);
            None
        });
        let cgroup = self.cgroups.adopt(id).unwrap_or_else(|e| {
            tracing::error!(job = %id, error = %e, "cannot adopt the job's cgroup");
            None
        });
        let shim = file.shim.and_then(live_shim);
        let mut job = Job {
            id: id.clone(),
            dir,
            file,
            phase: Phase::Launching {
                reply_to: None,
                deadline: clock::boot_deadline(LAUNCH_TIMEOUT_MS),
            },
            shim: None,
            started,
            init_pidfd: None,
            cgroup,
            oom_watch: None,
            pipes: None,
            attach: Attach::Never,
            killed: false,
            launch_abandoned: None,
            acked: false,
        };
        if let Some(a) = shim {
            job.pipes = a.pipes;
            job.shim = Some(a.link);
        }
        match (exit, &job.shim) {
            (Some(exit), _) => {
                let oom = job
                    .cgroup
                    .as_ref()
                    .and_then(|c| c.oom_kills().ok())
                    .unwrap_or(0);
                let (o, ended_ns) = outcome::from_exit(&exit, job.file.stop.map(|s| s.cause), oom);
                if o.reason != EndReason::LaunchFailed && job.pipes.is_some() {
                    job.attach = Attach::Wanted;
                }
                tracing::info!(job = %id, reason = o.reason.as_str(), "adopted an ended job");
                job.phase = Phase::Exited {
                    outcome: o,
                    ended_ns,
                };
            }
            (None, Some(shim)) => {
                if job.started.is_some() {
                    job.phase = Phase::Running;
                    job.attach = if job.pipes.is_some() {
                        Attach::Wanted
                    } else {
                        Attach::Never
                    };
                    job.init_pidfd = sys::pidfd_getfd(shim.pidfd.as_fd(), ShimFds::JOB_PIDFD).ok();
                    job.oom_watch = job.cgroup.as_ref().and_then(|c| c.oom_watch().ok());
                    tracing::info!(job = %id, shim = shim.pid, "adopted a running job");
                } else {
                    tracing::info!(job = %id, shim = shim.pid, "adopted a launching job");
                }
            }
            (None, None) => {
                if let Some(cg) = &job.cgroup {
                    let _ = cg.kill_all();
                }
                tracing::error!(job = %id, "no live shim and no exit record: job lost");
                job.phase = Phase::Exited {
                    outcome: JobOutcome::lost(
                        "the spawner restarted and found neither the job's shim nor its exit status",
                    ),
                    ended_ns: clock::realtime_ns(),
                };
            }
        }
        job
    }
}
