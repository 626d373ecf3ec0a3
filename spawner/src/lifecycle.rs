//! A job's life in the spawner: StartJob (checks, cgroup, pipes, record, shim), the shim's
//! reports, the end (outcome, exit event), and the release of everything once the exit was
//! acknowledged and the output drained.

use std::os::fd::{AsFd, OwnedFd};

use joblet_ipc_proto::RemoteError;
use joblet_ipc_proto::channel::spawner::SpawnerReply;
use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, LaunchSpec};
use joblet_ipc_proto::validate;
use nix::sys::signal::Signal;

use crate::cgroup::{CgroupError, JobCgroup};
use crate::clock;
use crate::daemon::Spawner;
use crate::launch::report::ShimReport;
use crate::launch::{self, LaunchPlan, OutputPipes, Placement, ShimFds};
use crate::outcome;
use crate::record::{ExitFile, JobDir, JobFile, ProcRef, StartedFile};
use crate::registry::{Attach, ClientId, Job, Phase, ShimLink};
use crate::sys;

/// A launch (namespaces, mounts, exec) that takes longer than this is abandoned.
pub const LAUNCH_TIMEOUT_MS: u64 = 60_000;

/// Refuses what this spawner does not support yet, before anything is created.
pub fn unsupported(launch: &LaunchSpec) -> Option<RemoteError> {
    let spec = &launch.spec;
    if launch.has_upload_dir {
        return Some(RemoteError::precondition("uploads are not supported yet"));
    }
    if !(spec.network.is_empty() || spec.network == "none") {
        return Some(RemoteError::precondition(format!(
            "network {:?}: networks are not supported yet (only none: loopback only)",
            spec.network
        )));
    }
    if !spec.volumes.is_empty() {
        return Some(RemoteError::precondition("volumes are not supported yet"));
    }
    if !spec.runtime.is_empty() {
        return Some(RemoteError::precondition("runtimes are not supported yet"));
    }
    None
}

fn cgroup_error(e: &CgroupError) -> RemoteError {
    if e.is_request_error() {
        RemoteError::invalid(e.to_string())
    } else {
        RemoteError::internal(e.to_string())
    }
}

/// The error a client gets when the launch failed.
pub fn launch_error(o: &JobOutcome) -> RemoteError {
    match o.exit_code {
        126 | 127 => RemoteError::invalid(o.message.clone()),
        _ => RemoteError::internal(format!("launch failed: {}", o.message)),
    }
}

/// What was created for a launch before the job entered the table; undone on failure.
struct Partial {
    dir: JobDir,
    cgroup: Option<JobCgroup>,
}

impl Partial {
    fn undo(self) {
        if let Some(cg) = self.cgroup {
            let _ = cg.kill_all();
            if let Err(e) = cg.remove() {
                tracing::error!(error = %e, "cannot remove the cgroup of a failed launch");
            }
        }
        if let Err(e) = self.dir.remove() {
            tracing::error!(error = %e, "cannot remove the record of a failed launch");
        }
    }
}

impl Spawner {
    /// StartJob. Returns the reply now when refused; `None` when the answer comes later, from
    /// the shim's report.
    pub fn start_job(
        &mut self,
        client: ClientId,
        request: u64,
        job: JobId,
        launch: LaunchSpec,
        upload: Vec<OwnedFd>,
    ) -> Option<SpawnerReply> {
        drop(upload);
        match self.try_start(client, request, &job, &launch) {
            Ok(()) => None,
            Err(e) => Some(SpawnerReply::Error(e)),
        }
    }

    fn try_start(
        &mut self,
        client: ClientId,
        request: u64,
        job: &JobId,
        launch: &LaunchSpec,
    ) -> Result<(), RemoteError> {
        validate::launch(launch)?;
        if let Some(e) = unsupported(launch) {
            return Err(e);
        }
        let dir = JobDir::new(&self.jobs_dir, job);
        if self.jobs.contains_key(job) || dir.path().exists() {
            return Err(RemoteError::new(
                joblet_ipc_proto::RemoteErrorKind::AlreadyExists,
                format!("job {job} already exists"),
            ));
        }
        let spec = &launch.spec;
        let limits = self
            .cgroups
            .resolve(
                &spec.limits,
                self.settings.default_pids_max,
                &self.io_devices,
            )
            .map_err(|e| cgroup_error(&e))?;
        dir.create()
            .map_err(|e| RemoteError::internal(e.to_string()))?;
        let mut partial = Partial { dir, cgroup: None };
        let mut file = JobFile {
            job: job.clone(),
            created_ns: clock::realtime_ns(),
            timeout_at: if spec.timeout_ms > 0 {
                clock::boot_deadline(spec.timeout_ms)
            } else {
                0
            },
            shim: None,
            stop: None,
        };
        let fail = |partial: Partial, e: RemoteError| {
            partial.undo();
            Err(e)
        };
        if let Err(e) = partial.dir.write_job(&file) {
            return fail(partial, RemoteError::internal(e.to_string()));
        }
        match self.cgroups.create(job, &limits) {
            Ok(cg) => partial.cgroup = Some(cg),
            Err(e) => return fail(partial, cgroup_error(&e)),
        }
        let Some(cgroup) = partial.cgroup.as_ref() else {
            return fail(partial, RemoteError::internal("cgroup missing"));
        };
        let oom_watch = match cgroup.oom_watch() {
            Ok(w) => w,
            Err(e) => return fail(partial, RemoteError::internal(e.to_string())),
        };
        let plan = LaunchPlan {
            job: job.clone(),
            dir: partial.dir.clone(),
            allowed_mounts: self.settings.allowed_mounts.clone(),
            disk_mb: if spec.limits.disk_mb > 0 {
                spec.limits.disk_mb
            } else {
                self.settings.default_disk_mb
            },
            uid: self.settings.job_uid,
            gid: self.settings.job_gid,
            hostname: launch::env::hostname(job),
            work_dir: launch::env::work_dir(spec).to_string(),
            command: spec.command.clone(),
            args: spec.args.clone(),
            env: launch::env::build(job, spec, &launch.secret_env),
        };
        let forked = OutputPipes::new().and_then(|pipes| {
            let attach = |pid: i32| cgroup.attach(pid).map_err(|e| e.to_string());
            let placement = match cgroup.clone_into_fd() {
                Some(fd) => Placement::CloneInto(fd),
                None => Placement::Attach(&attach),
            };
            launch::fork_shim(&plan, pipes, placement)
        });
        let (mut shim, out_r, err_r) = match forked {
            Ok(f) => f,
            Err(e) => return fail(partial, RemoteError::internal(e.to_string())),
        };
        file.shim = Some(ProcRef {
            pid: shim.pid,
            start_ticks: shim.start_ticks,
        });
        let released = partial
            .dir
            .write_job(&file)
            .map_err(|e| e.to_string())
            .and_then(|()| shim.release().map_err(|e| e.to_string()));
        if let Err(e) = released {
            // The shim exits by itself when its go pipe closes; reap it.
            let _ = sys::pidfd_send_signal(shim.pidfd.as_fd(), Signal::SIGKILL);
            let _ = sys::reap_pidfd(shim.pidfd.as_fd(), true);
            return fail(partial, RemoteError::internal(e));
        }
        tracing::info!(%job, shim = shim.pid, command = %spec.command, "job launching");
        self.jobs.insert(
            job.clone(),
            Job {
                id: job.clone(),
                dir: partial.dir,
                file,
                phase: Phase::Launching {
                    reply_to: Some((client, request)),
                    deadline: clock::boot_deadline(LAUNCH_TIMEOUT_MS),
                },
                shim: Some(ShimLink {
                    pid: shim.pid,
                    pidfd: shim.pidfd,
                    status: Some(shim.status),
                    reader: Default::default(),
                    child: true,
                }),
                started: None,
                init_pidfd: None,
                cgroup: partial.cgroup,
                oom_watch: Some(oom_watch),
                pipes: Some((out_r, err_r)),
                attach: Attach::Never,
                killed: false,
                launch_abandoned: None,
                acked: false,
            },
        );
        Ok(())
    }

    /// The shim's status pipe has data (or closed).
    pub fn on_status(&mut self, id: &JobId) {
        let mut reports = Vec::new();
        {
            let Some(shim) = self.jobs.get_mut(id).and_then(|j| j.shim.as_mut()) else {
                return;
            };
            let Some(status) = &shim.status else {
                return;
            };
            let mut buf = [0u8; 4096];
            match nix::unistd::read(status, &mut buf) {
                Ok(0) => shim.status = None,
                Ok(n) => shim.reader.push(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot read the shim's status");
                    shim.status = None;
                }
            }
            loop {
                match shim.reader.next_report() {
                    Ok(Some(r)) => reports.push(r),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(job = %id, error = %e, "shim status stream corrupt; ignoring it");
                        shim.status = None;
                        break;
                    }
                }
            }
        }
        for r in reports {
            match r {
                ShimReport::Started(s) => self.on_started(id, s),
                ShimReport::Ended(e) => self.on_ended(id, &e),
            }
        }
    }

    fn on_started(&mut self, id: &JobId, started: StartedFile) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let Phase::Launching { reply_to, .. } = &job.phase else {
            return;
        };
        let reply_to = *reply_to;
        job.started = Some(started);
        job.phase = Phase::Running;
        job.attach = Attach::Wanted;
        job.init_pidfd = job
            .shim
            .as_ref()
            .and_then(|s| sys::pidfd_getfd(s.pidfd.as_fd(), ShimFds::JOB_PIDFD).ok());
        tracing::info!(job = %id, pid = started.job_pid, "job started");
        if let Some((client, request)) = reply_to {
            let pid = u32::try_from(started.job_pid).unwrap_or(0);
            self.reply(
                client,
                request,
                SpawnerReply::Started {
                    pid,
                    started_ns: started.started_ns,
                },
            );
        }
        self.flush_all();
    }

    /// The job is over: build its outcome, answer a pending StartJob, tell every client.
    pub fn on_ended(&mut self, id: &JobId, exit: &ExitFile) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        if job.exited().is_some() {
            return;
        }
        let oom_kills = job.cgroup.as_ref().map_or(0, |c| {
            c.oom_kills().unwrap_or_else(|e| {
                tracing::warn!(job = %id, error = %e, "cannot read OOM kills");
                0
            })
        });
        let (outcome, ended_ns) =
            outcome::from_exit(exit, job.file.stop.map(|s| s.cause), oom_kills);
        self.end_job(id, outcome, ended_ns);
    }

    /// Moves a job to Exited with `outcome`, answering and broadcasting as needed.
    pub fn end_job(&mut self, id: &JobId, outcome: JobOutcome, ended_ns: u64) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let reply_to = match &job.phase {
            Phase::Launching { reply_to, .. } => *reply_to,
            _ => None,
        };
        if outcome.reason == EndReason::LaunchFailed {
            job.attach = Attach::Never;
            job.pipes = None;
        }
        job.init_pidfd = None;
        job.oom_watch = None;
        tracing::info!(job = %id, reason = outcome.reason.as_str(), exit_code = outcome.exit_code, message = %outcome.message, "job ended");
        job.phase = Phase::Exited { outcome, ended_ns };
        let event = crate::server::exit_event(job);
        if let (Some((client, request)), Some((o, _))) = (reply_to, job.exited()) {
            let e = launch_error(o);
            self.reply(client, request, SpawnerReply::Error(e));
        }
        if let Some(ev) = event {
            self.broadcast(ev);
        }
        self.flush_all();
    }

    /// The shim process exited (we killed it, or it died).
    pub fn on_shim_exit(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let Some(shim) = job.shim.take() else {
            return;
        };
        if shim.child {
            let _ = sys::reap_pidfd(shim.pidfd.as_fd(), false);
        }
        if job.exited().is_some() {
            return;
        }
        // It may have written its exit record just before dying.
        match job.dir.read_exit() {
            Ok(Some(exit)) => return self.on_ended(id, &exit),
            Ok(None) => {}
            Err(e) => tracing::error!(job = %id, error = %e, "cannot read the exit record"),
        }
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
        tracing::error!(job = %id, shim = shim.pid, "shim died without an exit record");
        self.end_job(id, outcome, clock::realtime_ns());
    }

    /// The cgroup's OOM watch fired: if something was OOM killed, the whole job goes.
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
        if cg.oom_kills().unwrap_or(0) == 0 {
            return;
        }
        tracing::info!(job = %id, "OOM kill in the job: killing the whole job");
        if let Some(p) = &job.init_pidfd {
            let _ = sys::pidfd_send_signal(p.as_fd(), Signal::SIGKILL);
        }
        let _ = cg.signal_all(Signal::SIGKILL);
        job.oom_watch = None;
    }

    /// AckExit: the frontend recorded the exit. Unknown jobs are fine (acks are idempotent).
    pub fn ack_exit(&mut self, id: &JobId) {
        if let Some(job) = self.jobs.get_mut(id) {
            if job.exited().is_some() {
                job.acked = true;
            } else {
                tracing::warn!(job = %id, "ack for a job that is still running; ignored");
            }
        }
    }

    /// Releases every acknowledged job whose output is drained (or never attached).
    pub fn release_finished_jobs(&mut self) {
        let done: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.acked && matches!(j.attach, Attach::Never | Attach::Drained))
            .map(|j| j.id.clone())
            .collect();
        for id in done {
            if let Some(job) = self.jobs.remove(&id) {
                self.release(job, false);
            }
        }
    }

    /// Frees everything of an ended job: its shim, pipes, cgroup and (unless `keep_record`)
    /// its record.
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
