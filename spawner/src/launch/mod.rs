//! Starting a job: the spawner forks a **shim** per job, the shim clones the **job init** into
//! new namespaces, and the init builds the job's root, drops to the job's identity and execs.
//!
//! ```text
//! spawner ──fork──▶ shim (host namespaces, root) ──clone3──▶ job init ──execve──▶ command
//!   ▲  status pipe: Started / Ended   │ waits for the init, writes `started` and `exit`
//!   └──────────────────────────────────┘ records, holds the output pipes until killed
//! ```
//!
//! The shim outlives a spawner restart: it keeps the pipes' read ends, its status pipe's read
//! end and the init's pidfd at fixed fd numbers ([`ShimFds`]) so a new spawner takes copies
//! with `pidfd_getfd`.

use std::ffi::CString;
use std::fmt::Display;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use joblet_ipc_proto::job::JobId;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::record::JobDir;
use crate::sys;

pub mod env;
mod exec;
mod identity;
mod init;
mod mounts;
mod netns;
pub mod probe;
pub mod report;
mod rootfs;
mod shim;

/// Fixed fd numbers in every shim.
pub struct ShimFds;
impl ShimFds {
    pub const STDOUT: RawFd = 3;
    pub const STDERR: RawFd = 4;
    pub const STATUS: RawFd = 5;
    pub const JOB_PIDFD: RawFd = 6;
}

/// Output pipes get this much buffer, so a burst of output waits in the kernel while persistd
/// restarts.
pub const PIPE_SIZE: i32 = 1 << 20;

/// Everything the shim and the job init need, decided and checked before the fork.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub job: JobId,
    pub dir: JobDir,
    pub allowed_mounts: Vec<PathBuf>,
    /// Size of the writable space (/work, /tmp, /dev/shm together), MiB.
    pub disk_mb: u64,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub work_dir: String,
    pub command: String,
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, see [`env::build`].
    pub env: Vec<String>,
}

/// How the job init gets into its cgroup before any job code runs.
pub enum Placement<'a> {
    /// cgroup v2: clone3 places it there at birth (`CLONE_INTO_CGROUP`).
    CloneInto(BorrowedFd<'a>),
    /// cgroup v1: the shim attaches the init to every hierarchy while it waits to be released.
    Attach(&'a dyn Fn(i32) -> Result<(), String>),
}

/// A launch step that failed, with the exit code the job gets for it: 127 (command not
/// found), 126 (not executable) or -1 (everything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub exit_code: i32,
    pub message: String,
}

impl StepError {
    pub fn new(step: impl Display, errno: Errno) -> StepError {
        StepError {
            exit_code: -1,
            message: format!("{step}: {errno}"),
        }
    }
    pub fn msg(message: impl Into<String>) -> StepError {
        StepError {
            exit_code: -1,
            message: message.into(),
        }
    }
}

pub type StepResult<T = ()> = Result<T, StepError>;

/// Names the step of a failed syscall: `mount("/usr").at(|| "mount /usr read-only")`.
pub trait At<T> {
    fn at<D: Display>(self, step: impl FnOnce() -> D) -> StepResult<T>;
}

impl<T> At<T> for nix::Result<T> {
    fn at<D: Display>(self, step: impl FnOnce() -> D) -> StepResult<T> {
        self.map_err(|e| StepError::new(step(), e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("create output pipes: {0}")]
    Pipes(Errno),
    #[error("create the shim's pipes: {0}")]
    ShimPipes(Errno),
    #[error("fork the shim: {0}")]
    Fork(Errno),
    #[error("open a pidfd for the shim: {0}")]
    ShimPidfd(Errno),
    #[error("read the shim's start time: {0}")]
    ShimStart(std::io::Error),
    #[error("release the shim: {0}")]
    Release(Errno),
    #[error("a command, argument or environment entry holds a NUL byte")]
    Nul,
}

/// The read and write ends of a job's stdout and stderr pipes.
pub struct OutputPipes {
    pub stdout_r: OwnedFd,
    pub stdout_w: OwnedFd,
    pub stderr_r: OwnedFd,
    pub stderr_w: OwnedFd,
}

impl OutputPipes {
    pub fn new() -> Result<OutputPipes, LaunchError> {
        let (stdout_r, stdout_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(LaunchError::Pipes)?;
        let (stderr_r, stderr_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(LaunchError::Pipes)?;
        for fd in [&stdout_w, &stderr_w] {
            if let Err(e) = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
                tracing::warn!(error = %e, "cannot raise an output pipe to 1 MiB; keeping the default");
            }
        }
        Ok(OutputPipes {
            stdout_r,
            stdout_w,
            stderr_r,
            stderr_w,
        })
    }
}

/// A forked shim, seen from the spawner.
pub struct Shim {
    pub pid: i32,
    pub start_ticks: u64,
    pub pidfd: OwnedFd,
    /// Read end of the status pipe, non-blocking.
    pub status: OwnedFd,
    go: Option<OwnedFd>,
}

impl Shim {
    /// Lets the shim start the job. Until then it waits, so that its pid is on record before
    /// anything runs; if the spawner dies first, the shim sees EOF and exits.
    pub fn release(&mut self) -> Result<(), LaunchError> {
        let go = self
            .go
            .take()
            .ok_or(LaunchError::Release(Errno::EALREADY))?;
        nix::unistd::write(&go, &[1]).map_err(LaunchError::Release)?;
        Ok(())
    }
}

/// The plan's strings as C strings, built before the fork.
pub(crate) struct ExecArgs {
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

impl ExecArgs {
    fn new(plan: &LaunchPlan) -> Result<ExecArgs, LaunchError> {
        let c = |s: &str| CString::new(s).map_err(|_| LaunchError::Nul);
        let mut argv = vec![c(&plan.command)?];
        for a in &plan.args {
            argv.push(c(a)?);
        }
        let envp = plan.env.iter().map(|e| c(e)).collect::<Result<_, _>>()?;
        Ok(ExecArgs { argv, envp })
    }
}

/// Forks the job's shim. The shim waits for [`Shim::release`]. The write ends of the output
/// pipes are consumed: after this only the shim (and then the job) holds them, so the pipes
/// reach end-of-file when the job is gone.
pub fn fork_shim(
    plan: &LaunchPlan,
    pipes: OutputPipes,
    placement: Placement<'_>,
) -> Result<(Shim, OwnedFd, OwnedFd), LaunchError> {
    let exec = ExecArgs::new(plan)?;
    let (status_r, status_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(LaunchError::ShimPipes)?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(LaunchError::ShimPipes)?;
    // SAFETY: the spawner is single-threaded (a poll loop, no runtime, no helper threads), so
    // the child may allocate and run ordinary code; it never returns from `shim::run`.
    let pid = match unsafe { nix::unistd::fork() }.map_err(LaunchError::Fork)? {
        nix::unistd::ForkResult::Child => shim::run(
            plan,
            &exec,
            shim::Fds {
                stdout_r: pipes.stdout_r.as_raw_fd(),
                stderr_r: pipes.stderr_r.as_raw_fd(),
                stdout_w: pipes.stdout_w.as_raw_fd(),
                stderr_w: pipes.stderr_w.as_raw_fd(),
                status_r: status_r.as_raw_fd(),
                status_w: status_w.as_raw_fd(),
                go_r: go_r.as_raw_fd(),
            },
            placement,
        ),
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    // The child cannot have been reaped (we are its parent and have not waited), so this pidfd
    // and start time name the shim itself.
    drop((pipes.stdout_w, pipes.stderr_w, status_w, go_r));
    let named = sys::pidfd_open(pid)
        .map_err(LaunchError::ShimPidfd)
        .and_then(|fd| {
            Ok((
                fd,
                sys::proc_start_ticks(pid).map_err(LaunchError::ShimStart)?,
            ))
        })
        .and_then(|named| {
            set_nonblocking(status_r.as_fd()).map_err(LaunchError::ShimPipes)?;
            Ok(named)
        });
    let (pidfd, start_ticks) = match named {
        Ok(n) => n,
        Err(e) => {
            // Closing the go pipe makes the waiting shim exit at once; reap it.
            drop(go_w);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(e);
        }
    };
    Ok((
        Shim {
            pid,
            start_ticks,
            pidfd,
            status: status_r,
            go: Some(go_w),
        },
        pipes.stdout_r,
        pipes.stderr_r,
    ))
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
