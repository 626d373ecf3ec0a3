//! A job's life in the spawner: StartJob (checks, cgroup, record, shim), the shim's records,
//! the end (outcome, exit event), and the release of everything once the exit was
//! acknowledged and the output drained.

use std::fmt::Display;
use std::os::fd::{AsFd, OwnedFd};

use joblet_ipc_proto::channel::spawner::SpawnerReply;
use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, LaunchSpec};
use joblet_ipc_proto::{RemoteError, RemoteErrorKind, validate};
use nix::sys::signal::Signal;

use crate::cgroup::CgroupError;
use crate::daemon::Spawner;
use crate::launch::{self, LaunchPlan, Placement, ShimFds, env};
use crate::record::{EXIT, ExitFile, JOB, JobDir, JobFile, STARTED, StartedFile, StopCause};
use crate::registry::{Attach, ClientId, Job, Phase, ShimLink};
use crate::{clock, outcome, sys};

/// Refuses what this spawner does not support yet, before anything is created.
pub fn unsupported(launch: &LaunchSpec) -> Result<(), RemoteError> {
    let (net, spec) = (&launch.spec.network, &launch.spec);
    let refusal = if !(net.is_empty() || net == "none") {
        format!("network {net:?}: networks are not supported yet (only none: loopback only)")
    } else if !spec.volumes.is_empty() {
        "volumes are not supported yet".into()
    } else if !spec.runtime.is_empty() {
        "runtimes are not supported yet".into()
    } else {
        return Ok(());
    };
    Err(RemoteError::precondition(refusal))
}

pub fn internal(e: impl Display) -> RemoteError {
    RemoteError::internal(e.to_string())
}

fn cgroup_error(e: CgroupError) -> RemoteError {
    match e.is_request_error() {
        true => RemoteError::invalid(e.to_string()),
        false => internal(e),
    }
}

impl Spawner {
    /// StartJob. `Err` is the answer now; on success the answer comes later, from the shim's
    /// records.
    pub fn start_job(
        &mut self,
        id: &JobId,
        launch: &LaunchSpec,
        upload: Option<OwnedFd>,
        reply_to: (ClientId, u64),
    ) -> Result<(), RemoteError> {
        validate::launch(launch)?;
        unsupported(launch)?;
        let is_dir = |fd| {
            nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        };
        if upload.as_ref().is_some_and(|fd| !is_dir(fd)) {
            return Err(RemoteError::invalid("the upload fd is not a directory"));
        }
        let dir = JobDir::new(&self.jobs_dir, id);
        if self.jobs.contains_key(id) || dir.path().exists() {
            let exists = format!("job {id} already exists");
            return Err(RemoteError::new(RemoteErrorKind::AlreadyExists, exists));
        }
        let (spec, s) = (&launch.spec, &self.settings);
        let limits = (self.cgroups).resolve(&spec.limits, s.default_pids_max, &self.io_devices);
        let limits = limits.map_err(cgroup_error)?;
        let timeout_at = match spec.timeout_ms {
            0 => 0,
            ms => clock::boot_deadline(ms),
        };
        let userns_slot = self.userns_slot()?;
        let file = JobFile {
            timeout_at,
            userns_slot,
            ..JobFile::default()
        };
        dir.create().map_err(internal)?;
        let mut job = Job::new(id.clone(), dir, file, None, Some(reply_to));
        let plan = self.plan(id, launch, userns_slot);
        // Everything made so far belongs to `job`; a failure releases it whole.
        let launched = (|| {
            job.dir.write(JOB, &job.file).map_err(internal)?;
            let upload = upload.as_ref().map(|u| u.as_fd());
            // cgroup v1: the shim joins the job's cgroups by path once released, so the factory
            // forks it while they are made, on the other core. v2 forks into the cgroup.
            let (early, late) = match self.cgroups.v1_paths(id) {
                Some(dirs) => (Some((plan, dirs)), None),
                None => (None, Some(plan)),
            };
            let ordered =
                early.map(|(p, dirs)| self.factory.order(p, Placement::Join(dirs), upload));
            let created = self.cgroups.create(id, &limits);
            // The shim and the cgroup go to `job` before either failure is returned.
            let adopted = match ordered {
                Some(ordered) => {
                    (ordered.map_err(internal)).and_then(|()| self.adopt_shim(&mut job))
                }
                None => Ok(()),
            };
            let cgroup = job.cgroup.insert(created.map_err(cgroup_error)?);
            adopted?;
            job.oom_watch = cgroup.oom_watch().map_err(internal)?;
            if let Some(plan) = late {
                let placement = match cgroup.clone_into_fd() {
                    Some(fd) => Placement::CloneInto(fd),
                    None => Placement::Join(cgroup.paths()),
                };
                self.factory
                    .order(plan, placement, upload)
                    .map_err(internal)?;
                self.adopt_shim(&mut job)?;
            }
            job.dir.write(JOB, &job.file).map_err(internal)
        })();
        if let Err(e) = launched {
            self.release(job, false);
            return Err(e);
        }
        tracing::info!(job = %id, shim = ?job.file.shim, command = %spec.command, "job prepared");
        self.jobs.insert(id.clone(), job);
        Ok(())
    }

    /// Takes the shim the factory forked for `job` (see `Factory::order`).
    fn adopt_shim(&mut self, job: &mut Job) -> Result<(), RemoteError> {
        let (shim, [pidfd, status, stdout, stderr, go]) = self.factory.made().map_err(internal)?;
        job.pipes = Some((stdout, stderr));
        job.file.shim = Some(shim);
        job.shim = Some(ShimLink {
            pidfd,
            status: Some(status),
            child: true,
        });
        job.go = Some(go);
        Ok(())
    }

    /// ReleaseJob: the frontend recorded the held job; its shim may start it.
    pub fn release_held(&mut self, id: &JobId) -> Result<SpawnerReply, RemoteError> {
        let go = self.jobs.get_mut(id).and_then(|j| j.go.take());
        let go = go.ok_or_else(|| RemoteError::not_found(format!("no held job {id} here")))?;
        launch::release(go).map_err(internal)?;
        Ok(SpawnerReply::Acked)
    }

    /// A free user-namespace slot (range of host ids), `None` when jobs get no user namespace.
    pub fn userns_slot(&self) -> Result<Option<u32>, RemoteError> {
        let u = &self.settings.userns;
        if !u.enabled {
            return Ok(None);
        }
        let taken = |k: &u32| self.jobs.values().any(|j| j.file.userns_slot == Some(*k));
        let full = format!("all {} user-namespace slots are in use", u.slots);
        let free = (0..u.slots).find(|k| !taken(k));
        free.map(Some)
            .ok_or(RemoteError::new(RemoteErrorKind::ResourceExhausted, full))
    }

    /// The launch plan of a job, from its request and the spawner's settings.
    pub fn plan(&self, job: &JobId, launch: &LaunchSpec, slot: Option<u32>) -> LaunchPlan {
        let (s, spec) = (&self.settings, &launch.spec);
        LaunchPlan {
            dir: JobDir::new(&self.jobs_dir, job),
            host_files: self.host_files.clone(),
            disk_mb: match spec.limits.disk_mb {
                0 => s.default_disk_mb,
                mb => mb,
            },
            uid: s.job_uid,
            gid: s.job_gid,
            // Validated at start: the last slot's range ends below u32::MAX.
            userns: slot.map(|k| (s.userns.host_base + k * s.userns.range, s.userns.range)),
            landlock: self.landlock,
            hostname: env::hostname(job),
            work_dir: env::work_dir(spec).to_string(),
            command: spec.command.clone(),
            args: spec.args.clone(),
            env: env::build(job, spec, &launch.secret_env),
            probe: false,
        }
    }

    /// The shim's status pipe has data (or closed): look at its records.
    pub fn on_status(&mut self, id: &JobId) {
        if let Some(shim) = self.jobs.get_mut(id).and_then(|j| j.shim.as_mut())
            && let Some(status) = &shim.status
        {
            loop {
                match nix::unistd::read(status, &mut [0u8; 64]) {
                    Ok(0) => break shim.status = None,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "cannot read the shim's status");
                        break shim.status = None;
                    }
                }
            }
        }
        self.refresh(id);
    }

    /// Moves the job on according to the `started` and `exit` records its shim wrote.
    pub fn refresh(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get(id).filter(|j| j.exited().is_none()) else {
            return;
        };
        let started = job.dir.read::<StartedFile>(STARTED);
        let started = crate::logged(started, format_args!("read the started record of {id}"));
        let exit = job.dir.read::<ExitFile>(EXIT);
        let exit = crate::logged(exit, format_args!("read the exit record of {id}"));
        let ended = exit.map(|exit| {
            let oom_kills = job.cgroup.as_ref().map(|c| c.oom_kills()).transpose();
            let oom_kills = crate::logged(oom_kills, format_args!("read the OOM kills of {id}"));
            let oom_kills = oom_kills.unwrap_or(0);
            outcome::from_exit(&exit, job.file.stop.map(|s| s.cause), oom_kills)
        });
        if let Some(s) = started.filter(|_| matches!(job.phase, Phase::Launching { .. })) {
            self.on_started(id, s);
        }
        if let Some((outcome, ended_ns)) = ended {
            self.end_job(id, outcome, ended_ns);
        }
    }

    fn on_started(&mut self, id: &JobId, started: StartedFile) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let reply_to = match job.phase {
            Phase::Launching { reply_to, .. } => reply_to,
            _ => None,
        };
        job.started = Some(started);
        job.phase = Phase::Running;
        job.attach = Attach::Wanted;
        let shim = job.shim.as_ref();
        job.init_pidfd =
            shim.and_then(|s| sys::pidfd_getfd(s.pidfd.as_fd(), ShimFds::JOB_PIDFD).ok());
        if let (None, Some(cg)) = (&job.oom_watch, &job.cgroup) {
            job.oom_watch = crate::logged(cg.oom_watch(), format_args!("watch {id} for OOM kills"));
        }
        tracing::info!(job = %id, pid = started.job_pid, "job started");
        if let Some((client, request)) = reply_to {
            let pid = u32::try_from(started.job_pid).unwrap_or(0);
            let started_ns = started.started_ns;
            self.reply(client, request, SpawnerReply::Started { pid, started_ns });
        }
        self.flush_all();
    }

    /// Moves a job to Exited with `outcome`, answering a pending StartJob and telling every
    /// client.
    pub fn end_job(&mut self, id: &JobId, outcome: JobOutcome, ended_ns: u64) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let failed = match job.phase {
            Phase::Launching {
                reply_to: Some(to), ..
            } => Some((to, outcome.clone())),
            _ => None,
        };
        if outcome.reason == EndReason::LaunchFailed {
            job.attach = Attach::Never;
            job.pipes = None;
        }
        (job.init_pidfd, job.oom_watch) = (None, None);
        tracing::info!(job = %id, reason = outcome.reason.as_str(), exit_code = outcome.exit_code,
            message = %outcome.message, "job ended");
        job.phase = Phase::Exited { outcome, ended_ns };
        let event = crate::server::exit_event(job);
        if let Some(((client, request), outcome)) = failed {
            self.reply(client, request, SpawnerReply::LaunchFailed { outcome });
        }
        event.into_iter().for_each(|ev| self.broadcast(ev));
        self.flush_all();
    }

    /// The shim process exited (we killed it, or it died).
    pub fn on_shim_exit(&mut self, id: &JobId) {
        let Some(shim) = self.jobs.get_mut(id).and_then(|j| j.shim.take()) else {
            return;
        };
        if shim.child {
            let _ = sys::reap_pidfd(shim.pidfd.as_fd(), false);
        }
        // It may have written its records just before dying.
        self.refresh(id);
        let Some(job) = self.jobs.get(id).filter(|j| j.exited().is_none()) else {
            return;
        };
        if let Some(cg) = &job.cgroup {
            let _ = cg.signal_all(Signal::SIGKILL);
        }
        let outcome = match (&job.phase, &job.launch_abandoned) {
            (Phase::Launching { .. }, Some(why)) => JobOutcome::launch_failed(why.clone()),
            (Phase::Launching { .. }, None) => {
                JobOutcome::launch_failed("the job's shim died during the launch")
            }
            _ => JobOutcome::lost("the job's shim died; its exit status is unknown"),
        };
        let pid = job.file.shim.map_or(0, |s| s.pid);
        tracing::error!(job = %id, shim = pid, "shim died without an exit record");
        self.end_job(id, outcome, clock::realtime_ns());
    }

    /// v1: the cgroup's OOM watch fired: if something was OOM killed, the whole job goes.
    pub fn on_oom(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let (Some(cg), Some(watch)) = (&job.cgroup, &job.oom_watch) else {
            return;
        };
        if let Err(e) = cg.ack_oom_watch(watch.as_fd()) {
            tracing::warn!(job = %id, error = %e, "cannot re-arm the OOM watch; dropping it");
            job.oom_watch = None;
        }
        // The eventfd also fires when the cgroup goes away: only a job at its limit (or one
        // the kernel already OOM-killed in) is killed.
        let at_limit = cg.under_oom().unwrap_or(false) || cg.oom_kills().unwrap_or(0) > 0;
        if !at_limit {
            return;
        }
        tracing::info!(job = %id, "the job reached its memory limit: killing the whole job");
        job.oom_watch = None;
        self.stop_job(id, StopCause::OutOfMemory, 0);
    }

    /// AckExit: the frontend recorded the exit. Unknown jobs are fine (acks are idempotent).
    pub fn ack_exit(&mut self, id: &JobId) {
        match self.jobs.get_mut(id) {
            Some(job) if job.exited().is_some() => job.acked = true,
            Some(_) => tracing::warn!(job = %id, "ack for a job that is still running; ignored"),
            None => {}
        }
    }

    /// Releases every acknowledged job whose output is drained (or never attached).
    pub fn release_finished_jobs(&mut self) {
        let done =
            |_: &JobId, j: &mut Job| j.acked && matches!(j.attach, Attach::Never | Attach::Drained);
        let done: Vec<Job> = self.jobs.extract_if(.., done).map(|(_, j)| j).collect();
        done.into_iter().for_each(|job| self.release(job, false));
    }

    /// Frees everything of a job: its shim, pipes, cgroup and (unless `keep_record`) its
    /// record; its user-namespace slot is free once it left the table.
    pub fn release(&mut self, mut job: Job, keep_record: bool) {
        if let Some(shim) = job.shim.take() {
            let _ = sys::pidfd_send_signal(shim.pidfd.as_fd(), Signal::SIGKILL);
            if shim.child && !matches!(sys::reap_pidfd(shim.pidfd.as_fd(), false), Ok(Some(_))) {
                self.zombies.push(shim.pidfd);
            }
        }
        drop((
            job.pipes.take(),
            job.oom_watch.take(),
            job.init_pidfd.take(),
        ));
        if let Some(cg) = job.cgroup.take() {
            if let Err(e) = cg.kill_all() {
                tracing::error!(job = %job.id, error = %e, "cannot empty the job's cgroup");
            }
            if let Err(e) = cg.remove() {
                tracing::error!(job = %job.id, error = %e, "cannot remove the job's cgroup");
            }
        }
        if !keep_record && let Err(e) = job.dir.remove() {
            tracing::error!(job = %job.id, error = %e, "cannot remove the job's record");
        }
        tracing::info!(job = %job.id, "job released");
    }
}
