//! Stopping jobs (StopJob, timeouts, shutdown) and every timer of the loop.
//!
//! A stop sends SIGTERM to every process of the job, then, after the grace period, SIGKILL to
//! the job's PID 1 (which ends its whole pid namespace) and `kill_all` on its cgroup. The stop
//! and its deadline are written to the job's record first, so a restarted spawner finishes it
//! and still reports the right reason.

use std::os::fd::AsFd;

use joblet_ipc_proto::{RemoteError, channel::spawner::SpawnerReply, job::JobId};
use nix::sys::signal::Signal;

use crate::clock;
use crate::daemon::{SHUTDOWN_ACK_WAIT_MS, Spawner};
use crate::record::{StopCause, StopRequest};
use crate::registry::{Job, Phase};
use crate::settings::MAX_STOP_GRACE_MS;
use crate::sys;

/// Grace between SIGTERM and kill for a job that reached its timeout.
pub const TIMEOUT_GRACE_MS: u32 = 2_000;

/// The deadlines a job waits for, boot-time ns: abandoning its launch, the kill at the end of
/// a stop's grace period, its timeout.
fn deadlines(job: &Job) -> [Option<u64>; 3] {
    let launch = match job.phase {
        Phase::Launching { deadline, .. } if job.launch_abandoned.is_none() => Some(deadline),
        Phase::Exited { .. } => return [None; 3],
        _ => None,
    };
    let kill = job.file.stop.filter(|_| !job.killed).map(|s| s.kill_at);
    let timeout =
        (job.file.timeout_at != 0 && job.file.stop.is_none()).then_some(job.file.timeout_at);
    [launch, kill, timeout]
}

/// The earliest deadline a job waits for, boot-time ns.
pub fn next_deadline(job: &Job) -> Option<u64> {
    deadlines(job).into_iter().flatten().min()
}

/// Whether the SIGTERM just sent was dropped where it would have ended any other process, so
/// the kill is due at once: the job is its PID 1 alone, and PID 1 leaves SIGTERM at its
/// default action (neither caught, ignored nor blocked). The default action is to terminate,
/// but the kernel drops signals sent into a pid namespace that its init does not handle; the
/// kill gives the stop the effect it would have had. A job that ignores or handles SIGTERM
/// keeps its grace period. The cgroup is read after the status: if it still holds only that
/// pid, the status was the job's init's (nothing can enter the cgroup to reuse the pid).
fn sigterm_is_void(job: &Job) -> bool {
    let (Some(started), Some(cg)) = (&job.started, &job.cgroup) else {
        return false;
    };
    let pid = started.job_pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |key| status.lines().find_map(|l| l.strip_prefix(key));
    let mask = |key| mask(key).and_then(|m| u64::from_str_radix(m.trim(), 16).ok());
    let term = 1u64 << (Signal::SIGTERM as u32 - 1);
    let untouched = |key| mask(key).is_some_and(|m| m & term == 0);
    let default = ["SigCgt:", "SigIgn:", "SigBlk:"].into_iter().all(untouched);
    default && cg.pids().is_ok_and(|p| p == [pid])
}

impl Spawner {
    /// StopJob.
    pub fn stop_request(&mut self, id: &JobId, grace_ms: u32) -> SpawnerReply {
        if !self.jobs.contains_key(id) {
            return SpawnerReply::Error(RemoteError::not_found(format!("no job {id} here")));
        }
        self.stop_job(id, StopCause::Stopped, grace_ms.min(MAX_STOP_GRACE_MS));
        SpawnerReply::Stopping
    }

    /// SIGTERM now, kill after `grace_ms`. A second stop can only bring the kill forward.
    pub fn stop_job(&mut self, id: &JobId, cause: StopCause, grace_ms: u32) {
        let Some(job) = self.jobs.get_mut(id).filter(|j| j.exited().is_none()) else {
            return;
        };
        let kill_at = clock::boot_deadline(u64::from(grace_ms));
        // A second stop keeps the first cause and can only bring the kill forward.
        let earlier = job.file.stop.map(|s| (s.cause, s.kill_at.min(kill_at)));
        let (cause, kill_at) = earlier.unwrap_or((cause, kill_at));
        let stop = StopRequest { cause, kill_at };
        job.file.stop = Some(stop);
        if let Err(e) = job.dir.write(crate::record::JOB, &job.file) {
            tracing::error!(job = %id, error = %e, "cannot record the stop; stopping anyway");
        }
        tracing::info!(job = %id, cause = ?stop.cause, grace_ms, "stopping job");
        // A held shim sees its release pipe close and leaves without starting anything.
        if job.go.take().is_some() {
            job.launch_abandoned = Some("stopped before the frontend released it".into());
        }
        if let Some(cg) = &job.cgroup
            && let Err(e) = cg.signal_all(Signal::SIGTERM)
        {
            tracing::warn!(job = %id, error = %e, "SIGTERM failed");
        }
        if grace_ms == 0 || sigterm_is_void(job) {
            self.kill_job(id);
        }
    }

    /// The end of a grace period: kill everything in the job. No waiting here (this loop
    /// serves every job): killing PID 1 ends its pid namespace, the job's exit comes through
    /// the shim as usual, and the release empties the cgroup for good.
    fn kill_job(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.killed = true;
        if let Some(p) = &job.init_pidfd {
            let _ = sys::pidfd_send_signal(p.as_fd(), Signal::SIGKILL);
        }
        if let Some(cg) = &job.cgroup
            && let Err(e) = cg.signal_all(Signal::SIGKILL)
        {
            tracing::error!(job = %id, error = %e, "cannot kill every process of the job");
        }
    }

    /// Gives up on a launch that hangs: the shim is killed, and its death ends the job.
    fn abandon_launch(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let secs = crate::registry::LAUNCH_TIMEOUT_MS / 1000;
        let why = format!("the launch did not finish within {secs} s");
        tracing::error!(job = %id, "{why}");
        job.launch_abandoned = Some(why);
        if let Some(shim) = &job.shim {
            let _ = sys::pidfd_send_signal(shim.pidfd.as_fd(), Signal::SIGKILL);
        }
        if let Some(cg) = &job.cgroup {
            let _ = cg.signal_all(Signal::SIGKILL);
        }
    }

    /// Acts on every deadline that has passed.
    pub fn on_timers(&mut self) {
        let now = clock::boot_ns();
        self.expire_hellos(now);
        let due = |j: &Job| deadlines(j).map(|d| d.is_some_and(|d| d <= now));
        let due: Vec<_> = self.jobs.values().map(|j| (j.id.clone(), due(j))).collect();
        for (id, [launch, kill, timeout]) in due.into_iter().filter(|(_, d)| d.contains(&true)) {
            if launch {
                self.abandon_launch(&id);
            }
            if kill {
                self.kill_job(&id);
            }
            if timeout {
                let grace = self.settings.stop_grace_ms.min(TIMEOUT_GRACE_MS);
                self.stop_job(&id, StopCause::Timeout, grace);
            }
        }
    }

    /// SIGTERM/SIGINT: stop accepting, stop every job, wait a bounded time for the acks.
    pub fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let grace = self.settings.stop_grace_ms;
        let running = self.jobs.values().filter(|j| j.exited().is_none());
        let running: Vec<JobId> = running.map(|j| j.id.clone()).collect();
        for id in running {
            self.stop_job(&id, StopCause::Stopped, grace);
        }
        let wait_ms = u64::from(grace) + SHUTDOWN_ACK_WAIT_MS;
        self.shutdown_deadline = Some(clock::boot_deadline(wait_ms));
    }

    pub fn shutdown_finished(&self) -> bool {
        let done = |d| self.jobs.is_empty() || clock::boot_ns() >= d;
        self.shutdown_deadline.is_some_and(done)
    }

    /// Cleans everything up. Jobs whose exit was not acknowledged keep their record directory
    /// (with its exit record), so the next spawner reports them again.
    pub fn finish_shutdown(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        for (id, job) in jobs {
            let keep_record = !job.acked;
            if keep_record {
                tracing::warn!(job = %id, "exit not acknowledged before shutdown; its record is kept for the next start");
            }
            self.release(job, keep_record);
        }
        for z in std::mem::take(&mut self.zombies) {
            let _ = sys::reap_pidfd(z.as_fd(), true);
        }
        if let Err(e) = self.cgroups.remove_base() {
            tracing::warn!(error = %e, "cannot remove our cgroup subtree");
        }
        tracing::info!("spawner stopped");
    }
}
