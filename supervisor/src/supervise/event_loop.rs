//! The run loop: one thread, one `signalfd` (SIGCHLD, SIGTERM, SIGINT, SIGHUP) and `poll`
//! timeouts for restarts and stop deadlines. No async runtime: this is privileged code.
//!
//! Shutdown walks the helpers in stop order, each one SIGTERM then, past its deadline,
//! SIGKILL; then sweeps leftover children (orphans re-parented to us) the same way; it ends
//! once `waitpid` says we have no child at all. A second stop signal kills everything at once.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use joblet_ipc_proto::settings::EXIT_HOST_UNSUPPORTED;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::helpers::{HelperKind, HelperPlan};
use super::spawn::Launch;
use crate::host::notify::Notifier;
use crate::host::{memfd, procs};

/// How long a helper may take to die after SIGKILL before we stop waiting for it.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Between SIGTERM and SIGKILL for leftover children at the end of a shutdown.
const SWEEP_GRACE: Duration = Duration::from_secs(2);
/// Between SIGKILL rounds of the sweep (new orphans appear as their parents die).
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);
/// A stop signal this soon after the first is the same request delivered twice (`timeout`
/// and `kill 0` signal both us and our process group), not a person insisting.
const SECOND_SIGNAL_AFTER: Duration = Duration::from_millis(500);

/// The signals the loop reads; they are blocked so that only the signalfd sees them.
pub fn loop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("{step} failed: {source}")]
    Sys { step: &'static str, source: Errno },
    #[error(
        "the {0} refuses to run on this host: a boundary it is configured to enforce is \
         unavailable (its log above names the missing feature)"
    )]
    HostUnsupported(HelperKind),
}

/// One helper and where it is in its life.
pub struct Helper {
    pub kind: HelperKind,
    pub plan: HelperPlan,
    pub launch: Launch,
    pub backoff: Backoff,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Down,
    Running {
        pid: Pid,
        since: Instant,
    },
    RestartAt(Instant),
    Stopping {
        pid: Pid,
        deadline: Instant,
        killed: bool,
    },
}

impl Helper {
    pub fn new(kind: HelperKind, plan: HelperPlan, launch: Launch, backoff: Backoff) -> Helper {
        Helper {
            kind,
            plan,
            launch,
            backoff,
            state: State::Down,
        }
    }

    fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            State::Down | State::RestartAt(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Sweeping { next: Instant, rounds: u32 },
    Done,
}

pub struct EventLoop {
    helpers: Vec<Helper>,
    signals: SignalFd,
    notifier: Option<Notifier>,
    phase: Phase,
    forced: bool,
    /// When the first stop signal arrived.
    stop_requested: Option<Instant>,
    /// A helper that refused this host (see [`EXIT_HOST_UNSUPPORTED`]): the system stops.
    refused_by: Option<HelperKind>,
    /// Extra time the spawner gets at shutdown to stop its jobs (the job stop grace).
    spawner_extra: Duration,
    stop_timeout: Duration,
}

impl EventLoop {
    /// Takes over the already blocked [`loop_signals`].
    pub fn new(
        helpers: Vec<Helper>,
        notifier: Option<Notifier>,
        spawner_extra: Duration,
        stop_timeout: Duration,
    ) -> Result<EventLoop, LoopError> {
        let signals = SignalFd::with_flags(
            &loop_signals(),
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )
        .map_err(|source| LoopError::Sys {
            step: "signalfd",
            source,
        })?;
        Ok(EventLoop {
            helpers,
            signals,
            notifier,
            phase: Phase::Running,
            forced: false,
            stop_requested: None,
            refused_by: None,
            spawner_extra,
            stop_timeout,
        })
    }

    /// Starts every helper, then supervises until a stop signal has been fully handled.
    pub fn run(mut self) -> Result<(), LoopError> {
        let now = Instant::now();
        for i in 0..self.helpers.len() {
            self.start(i, now);
        }
        self.notify("READY=1\nSTATUS=helpers started");
        info!("joblet running");
        while self.phase != Phase::Done {
            let timeout = self
                .next_wakeup()
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.wait(timeout)?;
            self.tick(Instant::now());
        }
        info!("joblet stopped");
        match self.refused_by {
            Some(kind) => Err(LoopError::HostUnsupported(kind)),
            None => Ok(()),
        }
    }

    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier
            && let Err(e) = n.notify(state)
        {
            warn!(error = %e, "cannot notify systemd");
        }
    }

    fn start(&mut self, i: usize, now: Instant) {
        let h = &mut self.helpers[i];
        let outcome = memfd::sealed(c"joblet-settings", &h.plan.settings)
            .map_err(|e| e.to_string())
            .and_then(|settings| {
                h.launch
                    .spawn(&settings, &h.plan.inherited)
                    .map_err(|e| e.to_string())
            });
        match outcome {
            Ok(pid) => {
                info!(helper = %h.kind, pid = pid.as_raw(), "helper started");
                h.state = State::Running { pid, since: now };
            }
            Err(e) => {
                let delay = h.backoff.next_delay(Duration::ZERO);
                error!(
                    helper = %h.kind,
                    error = %e,
                    restart_in_ms = delay.as_millis() as u64,
                    "cannot start helper"
                );
                h.state = State::RestartAt(now + delay);
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let helper_deadlines = self.helpers.iter().filter_map(|h| match h.state {
            State::RestartAt(at) => Some(at),
            State::Stopping { deadline, .. } => Some(deadline),
            State::Down | State::Running { .. } => None,
        });
        let sweep = match self.phase {
            Phase::Sweeping { next, .. } => Some(next),
            // Stopping advances on exits (SIGCHLD) and on the helpers' stop deadlines.
            Phase::Running | Phase::Stopping | Phase::Done => None,
        };
        helper_deadlines.chain(sweep).min()
    }

    /// Waits for signals or the timeout, and handles the signals.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), LoopError> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Round up so a deadline is never polled for a few times at zero.
            Some(d) => PollTimeout::try_from(d.as_millis().saturating_add(1).min(i32::MAX as u128))
                .unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => {
                return Err(LoopError::Sys {
                    step: "poll",
                    source,
                });
            }
        }
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => self.on_signal(info.ssi_signo as i32),
                Ok(None) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(source) => {
                    return Err(LoopError::Sys {
                        step: "reading the signalfd",
                        source,
                    });
                }
            }
        }
    }

    fn on_signal(&mut self, signo: i32) {
        match Signal::try_from(signo) {
            Ok(Signal::SIGCHLD) => {
                self.reap(Instant::now());
            }
            Ok(sig @ (Signal::SIGTERM | Signal::SIGINT)) => {
                let now = Instant::now();
                match self.stop_requested {
                    None => {
                        info!(signal = %sig, "stopping: spawner first, then api, persistd, stated");
                        self.begin_stop(now);
                    }
                    Some(first) if now.duration_since(first) < SECOND_SIGNAL_AFTER => {
                        debug!(signal = %sig, "repeated stop signal ignored");
                    }
                    Some(_) if !self.forced => self.force_stop(sig),
                    Some(_) => {}
                }
            }
            Ok(Signal::SIGHUP) => info!(
                "SIGHUP ignored: the configuration is read at start; restart joblet to apply \
                 changes"
            ),
            _ => debug!(signo, "unexpected signal ignored"),
        }
    }

    fn begin_stop(&mut self, now: Instant) {
        self.notify("STOPPING=1");
        self.stop_requested = Some(now);
        self.phase = Phase::Stopping;
        for h in &mut self.helpers {
            if matches!(h.state, State::RestartAt(_)) {
                h.state = State::Down;
            }
        }
    }

    /// The second stop signal: everything gets SIGKILL now.
    fn force_stop(&mut self, sig: Signal) {
        warn!(signal = %sig, "second stop signal: killing every helper and child now");
        self.forced = true;
        for h in &mut self.helpers {
            if let Some(pid) = h.pid() {
                let _ = kill(pid, Signal::SIGKILL);
            }
            h.state = State::Down;
        }
        self.phase = Phase::Sweeping {
            next: Instant::now(),
            rounds: 1,
        };
    }

    /// Collects every exited child; returns false once we have no children at all.
    fn reap(&mut self, now: Instant) -> bool {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) => return true,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.on_exit(pid, status, now);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => return false,
                Err(e) => {
                    error!(error = %e, "waitpid failed");
                    return true;
                }
            }
        }
    }

    fn on_exit(&mut self, pid: Pid, status: WaitStatus, now: Instant) {
        let running = self.phase == Phase::Running;
        let Some(h) = self.helpers.iter_mut().find(|h| h.pid() == Some(pid)) else {
            // An orphan re-parented to us (a job shim whose spawner died): collected, no more.
            debug!(pid = pid.as_raw(), status = %describe(status), "reaped orphan");
            return;
        };
        let refused = status == WaitStatus::Exited(pid, i32::from(EXIT_HOST_UNSUPPORTED));
        match h.state {
            State::Running { .. } if running && refused => {
                let kind = h.kind;
                error!(helper = %kind, pid = pid.as_raw(),
                    "the helper refuses to run on this host (its log above names the missing \
                     feature); stopping joblet");
                h.state = State::Down;
                self.refused_by = Some(kind);
                self.begin_stop(now);
            }
            State::Running { since, .. } if running => {
                let ran_for = now.saturating_duration_since(since);
                let delay = h.backoff.next_delay(ran_for);
                warn!(
                    helper = %h.kind,
                    pid = pid.as_raw(),
                    status = %describe(status),
                    ran_for_ms = ran_for.as_millis() as u64,
                    restart_in_ms = delay.as_millis() as u64,
                    failures = h.backoff.failures(),
                    "helper exited; restarting"
                );
                h.state = State::RestartAt(now + delay);
            }
            _ => {
                info!(helper = %h.kind, pid = pid.as_raw(), status = %describe(status), "helper stopped");
                h.state = State::Down;
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => {
                for i in 0..self.helpers.len() {
                    if matches!(self.helpers[i].state, State::RestartAt(at) if at <= now) {
                        info!(helper = %self.helpers[i].kind, "restarting helper");
                        self.start(i, now);
                    }
                }
            }
            Phase::Stopping => self.advance_stop(now),
            Phase::Sweeping { .. } => self.sweep(now),
            Phase::Done => {}
        }
    }

    fn stop_timeout(&self, kind: HelperKind) -> Duration {
        match kind {
            HelperKind::Spawner => self.stop_timeout + self.spawner_extra,
            _ => self.stop_timeout,
        }
    }

    /// Stops the helpers one at a time, in stop order.
    fn advance_stop(&mut self, now: Instant) {
        for kind in HelperKind::STOP_ORDER {
            let timeout = self.stop_timeout(kind);
            let Some(h) = self.helpers.iter_mut().find(|h| h.kind == kind) else {
                continue;
            };
            match h.state {
                State::Running { pid, .. } => {
                    info!(helper = %kind, pid = pid.as_raw(), timeout_ms = timeout.as_millis() as u64, "sending SIGTERM");
                    signal(pid, Signal::SIGTERM);
                    h.state = State::Stopping {
                        pid,
                        deadline: now + timeout,
                        killed: false,
                    };
                    return;
                }
                State::Stopping {
                    pid,
                    deadline,
                    killed,
                } => {
                    if now < deadline {
                        return;
                    }
                    if !killed {
                        warn!(helper = %kind, pid = pid.as_raw(), "did not stop in time; sending SIGKILL");
                        signal(pid, Signal::SIGKILL);
                        h.state = State::Stopping {
                            pid,
                            deadline: now + KILL_WAIT,
                            killed: true,
                        };
                        return;
                    }
                    error!(helper = %kind, pid = pid.as_raw(), "still alive after SIGKILL; moving on");
                    h.state = State::Down;
                }
                State::Down | State::RestartAt(_) => h.state = State::Down,
            }
        }
        self.phase = Phase::Sweeping {
            next: now,
            rounds: 0,
        };
        self.sweep(now);
    }

    /// Ends leftover children: SIGTERM once, then SIGKILL rounds until none is left.
    fn sweep(&mut self, now: Instant) {
        let Phase::Sweeping { next, rounds } = self.phase else {
            return;
        };
        if !self.reap(now) {
            self.phase = Phase::Done;
            return;
        }
        if now < next {
            return;
        }
        let sig = if rounds == 0 {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        let children = procs::children_of(std::process::id());
        if !children.is_empty() {
            warn!(count = children.len(), signal = %sig, pids = ?children, "ending leftover processes");
        }
        for pid in children {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
        self.phase = Phase::Sweeping {
            next: now
                + if rounds == 0 {
                    SWEEP_GRACE
                } else {
                    SWEEP_INTERVAL
                },
            rounds: rounds.saturating_add(1),
        };
    }
}

fn signal(pid: Pid, sig: Signal) {
    if let Err(e) = kill(pid, sig) {
        // ESRCH: it died on its own meanwhile; SIGCHLD will tell.
        debug!(pid = pid.as_raw(), signal = %sig, error = %e, "kill failed");
    }
}

/// An exit status for people: `exit code 3`, `killed by SIGKILL`, `killed by SIGSEGV (core
/// dumped)`.
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!(
                "killed by {sig}{}",
                if core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_well() {
        let pid = Pid::from_raw(1);
        assert_eq!(describe(WaitStatus::Exited(pid, 3)), "exit code 3");
        assert_eq!(
            describe(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            "killed by SIGKILL"
        );
        assert_eq!(
            describe(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)),
            "killed by SIGSEGV (core dumped)"
        );
    }
}
