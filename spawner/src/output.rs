//! The spawner's link to persistd (`Channel::Output`): hands over each job's pipe read ends
//! and learns when their output was drained. The spawner never reads job output itself.
//!
//! The link is non-blocking end to end: connect, hello, attach and replies all go through the
//! poll loop; a lost or refused connection is retried with backoff, and every job not yet
//! drained is attached again on the new connection (persistd ignores duplicates).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use joblet_ipc_proto::blocking::SeqSocket;
use joblet_ipc_proto::channel::output::{FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::handshake::{self, Hello, HelloReply};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::{Channel, IpcError};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

use crate::clock;
use crate::registry::{Attach, Job};

const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 5_000;
/// persistd must answer the hello within this time.
const HELLO_TIMEOUT_MS: u64 = 5_000;

enum Conn {
    Down,
    /// Hello sent, waiting for the answer until the deadline (boot-time ns).
    Connecting(SeqSocket, u64),
    Ready(SeqSocket),
}

pub struct OutputLink {
    path: PathBuf,
    conn: Conn,
    backoff_ms: u64,
    /// Boot-time ns of the next connection attempt while down.
    retry_at: u64,
    /// The socket was full during the last flush.
    blocked: bool,
}

impl OutputLink {
    pub fn new(path: PathBuf) -> OutputLink {
        OutputLink {
            path,
            conn: Conn::Down,
            backoff_ms: BACKOFF_MIN_MS,
            retry_at: 0,
            blocked: false,
        }
    }

    pub fn poll_fd(&self) -> Option<(RawFd, libc::c_short)> {
        let out = if self.blocked { libc::POLLOUT } else { 0 };
        match &self.conn {
            Conn::Down => None,
            Conn::Connecting(s, _) => Some((s.as_raw_fd(), libc::POLLIN)),
            Conn::Ready(s) => Some((s.as_raw_fd(), libc::POLLIN | out)),
        }
    }

    pub fn deadline(&self) -> Option<u64> {
        match self.conn {
            Conn::Down => Some(self.retry_at),
            Conn::Connecting(_, deadline) => Some(deadline),
            Conn::Ready(_) => None,
        }
    }

    fn lost(&mut self, jobs: &mut BTreeMap<JobId, Job>, why: &str) {
        tracing::warn!(socket = %self.path.display(), reason = why, retry_in_ms = self.backoff_ms, "output link to persistd down");
        self.conn = Conn::Down;
        self.blocked = false;
        self.retry_at = clock::boot_deadline(self.backoff_ms);
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
        for job in jobs.values_mut() {
            if matches!(job.attach, Attach::Sent | Attach::WatchWanted) {
                job.attach = Attach::Wanted;
            }
        }
    }

    /// Starts a connection attempt if the link is down and the backoff has passed.
    pub fn connect_if_due(&mut self, jobs: &mut BTreeMap<JobId, Job>) {
        let now = clock::boot_ns();
        match self.conn {
            Conn::Connecting(_, deadline) if deadline <= now => {
                self.lost(jobs, "persistd did not answer the hello");
            }
            Conn::Down if now >= self.retry_at => match self.start_connect() {
                Ok(sock) => {
                    self.conn = Conn::Connecting(sock, clock::boot_deadline(HELLO_TIMEOUT_MS))
                }
                Err(e) => self.lost(jobs, &e),
            },
            _ => {}
        }
    }

    fn start_connect(&self) -> Result<SeqSocket, String> {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = socket(AddressFamily::Unix, SockType::SeqPacket, flags, None);
        let fd = fd.map_err(|e| format!("socket: {e}"))?;
        // A Unix socket connects at once or fails (EAGAIN when the backlog is full).
        let addr = UnixAddr::new(&self.path).and_then(|a| connect(fd.as_raw_fd(), &a));
        addr.map_err(|e| format!("connect: {e}"))?;
        let sock = SeqSocket::from_fd(fd);
        let hello = sock.send(&Hello::new(Channel::Output), &[]);
        hello.map(|()| sock).map_err(|e| format!("hello: {e}"))
    }

    pub fn on_ready(
        &mut self,
        revents: libc::c_short,
        jobs: &mut BTreeMap<JobId, Job>,
        buf: &mut Vec<u8>,
    ) {
        if revents & libc::POLLOUT != 0 {
            self.blocked = false;
        }
        if let Err(why) = self.read(jobs, buf) {
            self.lost(jobs, &why);
        }
        self.flush(jobs);
    }

    fn read(&mut self, jobs: &mut BTreeMap<JobId, Job>, buf: &mut Vec<u8>) -> Result<(), String> {
        loop {
            match &self.conn {
                Conn::Down => return Ok(()),
                Conn::Connecting(s, _) => match s.recv::<HelloReply>(buf) {
                    Err(e) if e.would_block() => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                    Ok((reply, _)) => {
                        handshake::accepted(reply).map_err(|e| e.to_string())?;
                        let Conn::Connecting(s, _) = std::mem::replace(&mut self.conn, Conn::Down)
                        else {
                            return Ok(());
                        };
                        self.conn = Conn::Ready(s);
                        self.backoff_ms = BACKOFF_MIN_MS;
                        tracing::info!(socket = %self.path.display(), "output link to persistd up");
                    }
                },
                Conn::Ready(s) => match s.recv::<FromPersistOutput>(buf) {
                    Err(e) if e.would_block() => return Ok(()),
                    Err(IpcError::Closed) => return Err("persistd closed the connection".into()),
                    Err(e) => return Err(e.to_string()),
                    Ok((FromPersistOutput::Attached { job }, _)) => {
                        tracing::debug!(%job, "persistd reads the job's output");
                    }
                    Ok((FromPersistOutput::Drained { job }, _)) => {
                        if let Some(j) = jobs.get_mut(&job) {
                            tracing::debug!(%job, "job output drained");
                            j.attach = Attach::Drained;
                            j.pipes = None;
                        }
                    }
                },
            }
        }
    }

    /// Sends Attach (and Watch for running jobs) for every job that wants it, until the socket
    /// is full.
    pub fn flush(&mut self, jobs: &mut BTreeMap<JobId, Job>) {
        // Only on a ready link whose socket is not known to be full.
        let (Conn::Ready(sock), false) = (&self.conn, self.blocked) else {
            return;
        };
        let mut failure = None;
        'jobs: for job in jobs.values_mut() {
            while matches!(job.attach, Attach::Wanted | Attach::WatchWanted) {
                match send_next(sock, job) {
                    Ok(next) => job.attach = next,
                    Err(e) if e.would_block() => {
                        self.blocked = true;
                        break 'jobs;
                    }
                    Err(e) => {
                        failure = Some(e.to_string());
                        break 'jobs;
                    }
                }
            }
        }
        if let Some(why) = failure {
            self.lost(jobs, &why);
        }
    }
}

/// Sends the job's next hand-over message and returns its next state: the pipes' read ends
/// (Attach), then, while it runs, its cgroup directories for metrics (Watch).
fn send_next(sock: &SeqSocket, job: &Job) -> Result<Attach, IpcError> {
    let (Attach::Wanted, Some((out, err))) = (job.attach, &job.pipes) else {
        let dirs = match (job.attach, &job.cgroup) {
            (Attach::WatchWanted, Some(cg)) => cg.watch_dirs(),
            _ => return Ok(Attach::Never),
        };
        let dirs = crate::logged(
            dirs,
            format_args!("open the cgroup of {} for metrics", job.id),
        );
        let (kinds, fds): (Vec<_>, Vec<_>) = dirs.into_iter().unzip();
        let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let msg = ToPersistOutput::Watch {
            job: job.id.clone(),
            dirs: kinds,
        };
        return sock.send(&msg, &fds).map(|()| Attach::Sent);
    };
    let msg = ToPersistOutput::Attach {
        job: job.id.clone(),
        started_ns: job.started.map_or(0, |s| s.started_ns),
    };
    sock.send(&msg, &[out.as_fd(), err.as_fd()])?;
    Ok(match job.exited() {
        None => Attach::WatchWanted,
        Some(_) => Attach::Sent,
    })
}
