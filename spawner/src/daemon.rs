//! The spawner's state and its single-threaded `poll(2)` loop. Nothing here blocks on a job or
//! a client: every fd is non-blocking and every wait is a deadline folded into poll's timeout.
//! Each concern adds its handlers in its own module (`server`, `lifecycle`, `stop`, `output`,
//! `adopt`).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use joblet_ipc_proto::{blocking::SeqListener, job::JobId, settings::SpawnerSettings};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cgroup::Cgroups;
use crate::clock;
use crate::launch::factory::Factory;
use crate::output::OutputLink;
use crate::registry::{ClientId, Job};
use crate::server::Client;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("block signals for the signalfd: {0}")]
    Signals(nix::errno::Errno),
    #[error("poll: {0}")]
    Poll(nix::errno::Errno),
    #[error("listener: {0}")]
    Listener(std::io::Error),
}

/// How long shutdown waits for exit events to be acknowledged.
pub const SHUTDOWN_ACK_WAIT_MS: u64 = 5_000;

pub struct Spawner {
    pub settings: SpawnerSettings,
    pub jobs_dir: PathBuf,
    pub cgroups: Cgroups,
    /// Devices backing the allowed mounts, where io limits apply (the job's writable space is
    /// a tmpfs: memory, no device).
    pub io_devices: Vec<(u32, u32)>,
    /// The allowed host paths that are files, which each job binds into its copy of the base
    /// (`launch::rootfs`); the directories are in the base.
    pub host_files: Vec<PathBuf>,
    /// Forks the jobs' shims.
    pub factory: Factory,
    /// Whether jobs get the Landlock layer (configured, and available on this kernel).
    pub landlock: bool,
    pub jobs: BTreeMap<JobId, Job>,
    pub clients: BTreeMap<ClientId, Client>,
    pub next_client: ClientId,
    pub listener: SeqListener,
    pub output: OutputLink,
    /// Set once SIGTERM/SIGINT arrived: boot-time ns until which acks are awaited.
    pub shutdown_deadline: Option<u64>,
    /// Killed shims of ours not yet reaped.
    pub zombies: Vec<OwnedFd>,
    /// Receive buffer shared by every connection (frames are handled one at a time).
    pub buf: Vec<u8>,
}

/// What a ready fd belongs to.
#[derive(Debug, Clone)]
enum Token {
    Signal,
    Listener,
    Client(ClientId),
    Output,
    Status(JobId),
    Shim(JobId),
    Oom(JobId),
    Zombie(RawFd),
}

/// Blocks SIGTERM and SIGINT and returns a signalfd for them, so they arrive in the loop.
pub fn signal_fd() -> Result<SignalFd, DaemonError> {
    let mask = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT]);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(DaemonError::Signals)?;
    let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
    SignalFd::with_flags(&mask, flags).map_err(DaemonError::Signals)
}

impl Spawner {
    /// Serves until shutdown is complete.
    pub fn run(&mut self, signals: &SignalFd) -> Result<(), DaemonError> {
        self.listener
            .set_nonblocking(true)
            .map_err(DaemonError::Listener)?;
        loop {
            self.output.connect_if_due(&mut self.jobs);
            self.output.flush(&mut self.jobs);
            if self.shutdown_finished() {
                self.finish_shutdown();
                self.factory.stop();
                return Ok(());
            }
            let (mut fds, tokens) = self.poll_set(signals.as_fd().as_raw_fd());
            let until = |d| i32::try_from(clock::ms_until(d)).unwrap_or(i32::MAX);
            let timeout = self.next_deadline().map_or(-1, until);
            // SAFETY: `fds` is a valid array of pollfd for its length; each fd is owned by
            // `self` or `signals` and stays open for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            match (n, nix::errno::Errno::last()) {
                (..0, nix::errno::Errno::EINTR) => continue,
                (..0, e) => return Err(DaemonError::Poll(e)),
                _ => {}
            }
            for (p, token) in fds.iter().zip(tokens) {
                if p.revents != 0 {
                    self.dispatch(token, p.revents, signals);
                }
            }
            self.on_timers();
            self.release_finished_jobs();
        }
    }

    fn poll_set(&self, signal_fd: RawFd) -> (Vec<libc::pollfd>, Vec<Token>) {
        let mut fds = Vec::new();
        let mut tokens = Vec::new();
        let mut add = |fd: RawFd, events: libc::c_short, t: Token| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tokens.push(t);
        };
        add(signal_fd, libc::POLLIN, Token::Signal);
        // Nothing new is accepted once shutdown began.
        if self.shutdown_deadline.is_none() {
            add(self.listener.as_raw_fd(), libc::POLLIN, Token::Listener);
        }
        for (id, c) in &self.clients {
            add(c.sock.as_raw_fd(), c.poll_events(), Token::Client(*id));
        }
        if let Some((fd, events)) = self.output.poll_fd() {
            add(fd, events, Token::Output);
        }
        for (id, job) in &self.jobs {
            if let Some(shim) = &job.shim {
                let pidfd = shim.pidfd.as_raw_fd();
                add(pidfd, libc::POLLIN, Token::Shim(id.clone()));
                if let Some(status) = &shim.status {
                    add(status.as_raw_fd(), libc::POLLIN, Token::Status(id.clone()));
                }
            }
            if let Some(w) = &job.oom_watch {
                add(w.as_raw_fd(), libc::POLLIN, Token::Oom(id.clone()));
            }
        }
        for z in &self.zombies {
            add(z.as_raw_fd(), libc::POLLIN, Token::Zombie(z.as_raw_fd()));
        }
        (fds, tokens)
    }

    fn dispatch(&mut self, token: Token, revents: libc::c_short, signals: &SignalFd) {
        match token {
            Token::Signal => {
                while let Ok(Some(info)) = signals.read_signal() {
                    tracing::info!(signal = info.ssi_signo, "shutting down");
                    self.begin_shutdown();
                }
            }
            Token::Listener => self.accept_clients(),
            Token::Client(id) => self.on_client(id, revents),
            Token::Output => self.output.on_ready(revents, &mut self.jobs, &mut self.buf),
            Token::Status(id) => self.on_status(&id),
            Token::Shim(id) => self.on_shim_exit(&id),
            Token::Oom(id) => self.on_oom(&id),
            Token::Zombie(fd) => self.reap_zombie(fd),
        }
    }

    /// The earliest pending deadline of any kind, boot-time ns.
    fn next_deadline(&self) -> Option<u64> {
        let jobs = self.jobs.values().filter_map(crate::stop::next_deadline);
        let clients = self.clients.values().filter_map(Client::deadline);
        jobs.chain(clients)
            .chain(self.output.deadline())
            .chain(self.shutdown_deadline)
            .min()
    }

    fn reap_zombie(&mut self, fd: RawFd) {
        if let Some(i) = self.zombies.iter().position(|z| z.as_raw_fd() == fd) {
            let z = self.zombies.swap_remove(i);
            let _ = crate::sys::reap_pidfd(z.as_fd(), false);
        }
    }
}
