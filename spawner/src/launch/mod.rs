//! Starting a job: the spawner's [`factory`] forks a **shim** per job (the spawner's child,
//! through `CLONE_PARENT`), the shim clones the **job init** into new namespaces, and the init
//! builds the job's root, drops to the job's identity and execs.
//!
//! ```text
//! spawner ──order──▶ factory ──fork──▶ shim (host namespaces, root) ──clone3──▶ job init ──execve──▶ command
//!   ▲  status pipe: one byte per news     │ waits for the init, writes the `started` and
//!   └─────────────────────────────────────┘ `exit` records, holds the output pipes until killed
//! ```
//!
//! The shim outlives a spawner restart: it keeps the pipes' read ends, its status pipe's read
//! end and the init's pidfd at fixed fd numbers ([`ShimFds`]) so a new spawner takes copies
//! with `pidfd_getfd`. The records on disk are the truth; the status pipe only says "look".
//!
//! The hardening layers of the init, in order: namespaces (with a user namespace when
//! configured), the root filesystem ([`rootfs`]), the Landlock ruleset built in the new root
//! ([`landlock`]), the identity drop, Landlock enforced, and the seccomp filter ([`seccomp`],
//! compiled once by the spawner) installed as the very last step before `execve`.

use std::ffi::CString;
use std::fmt::Display;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use serde::{Deserialize, Serialize};

use crate::record::{JobDir, bounded_message};
use crate::sys::{self, Cloned};

pub mod env;
mod exec;
pub mod factory;
mod identity;
mod init;
pub mod landlock;
mod mounts;
mod netns;
pub mod rootfs;
pub mod seccomp;
mod shim;
mod upload;

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

/// Everything the shim and the job init need, decided and checked by the spawner, and sent to
/// the shim factory (except the seccomp filter, which the factory has its own copy of).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchPlan {
    pub dir: JobDir,
    /// The allowed host paths that are files (the directories are in the base, see [`rootfs`]).
    pub host_files: Vec<PathBuf>,
    /// Size of the writable space (/work, /tmp, /dev/shm together), MiB.
    pub disk_mb: u64,
    /// The job's uid and gid: inside its user namespace when it has one, else host ids.
    pub uid: u32,
    pub gid: u32,
    /// The job's user namespace: its first host id and how many ids it maps (from 0 inside).
    pub userns: Option<(u32, u32)>,
    pub landlock: bool,
    pub hostname: String,
    pub work_dir: String,
    pub command: String,
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, see [`env::build`].
    pub env: Vec<String>,
    /// The start-up probe: every step of a launch, then `_exit(0)` instead of `execve`.
    pub probe: bool,
}

/// How the job init gets into its cgroup before any job code runs.
pub enum Placement<'a> {
    /// cgroup v2: clone3 places it there at birth (`CLONE_INTO_CGROUP`).
    CloneInto(BorrowedFd<'a>),
    /// cgroup v1: the job's directory in every hierarchy; the init joins each itself.
    Join(Vec<PathBuf>),
}

/// A launch step that failed, with the exit code the job gets for it: 127 (command not
/// found), 126 (not executable) or -1 (everything else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct StepError {
    pub exit_code: i32,
    pub message: String,
}

impl StepError {
    pub fn new(step: impl Display, error: impl Display) -> StepError {
        StepError::msg(format!("{step}: {error}"))
    }
    /// A failure that names its step itself.
    pub fn of(error: impl Display) -> StepError {
        StepError::msg(error.to_string())
    }
    pub fn msg(message: impl Into<String>) -> StepError {
        StepError::exit(-1, message.into())
    }
    pub fn exit(exit_code: i32, message: String) -> StepError {
        StepError { exit_code, message }
    }

    /// What the init writes to its error pipe: the exit code, then the text (bounded).
    fn encode(&self) -> Vec<u8> {
        let mut out = self.exit_code.to_le_bytes().to_vec();
        out.extend_from_slice(bounded_message(self.message.clone()).as_bytes());
        out
    }

    /// Reads what the error pipe carried: `None` when it was empty (the command was exec'd).
    fn decode(bytes: &[u8]) -> Option<StepError> {
        let (code, text) = match bytes.split_first_chunk::<4>() {
            _ if bytes.is_empty() => return None,
            Some((code, text)) => (i32::from_le_bytes(*code), String::from_utf8_lossy(text)),
            None => (-1, "the job init sent a truncated error".into()),
        };
        Some(StepError::exit(code, text.into_owned()))
    }
}

/// Largest error text from the job init.
const MAX_INIT_ERROR: usize = crate::record::MAX_MESSAGE_LEN;

pub type StepResult<T = ()> = Result<T, StepError>;

/// Names the step of a failed call: `mount("/usr").at(|| "mount /usr read-only")`.
pub trait At<T> {
    fn at<D: Display>(self, step: impl FnOnce() -> D) -> StepResult<T>;
}

impl<T, E: Display> At<T> for Result<T, E> {
    fn at<D: Display>(self, step: impl FnOnce() -> D) -> StepResult<T> {
        self.map_err(|e| StepError::new(step(), e))
    }
}

/// A forked shim's fds, seen from the spawner: its pidfd, the status pipe's read end
/// (non-blocking), stdout's and stderr's read ends, and the release pipe's write end (see
/// [`release`]).
pub type ShimEnds = [OwnedFd; 5];

/// Lets the shim start the job. Until then it waits, so that its pid is on record before
/// anything runs; if the spawner dies (or drops `go`) first, the shim sees EOF and exits.
pub fn release(go: OwnedFd) -> StepResult {
    nix::unistd::write(&go, &[1])
        .map(drop)
        .at(|| "release the shim")
}

/// What the init needs at `execve`, built before the fork: the plan's strings as C strings, and
/// the compiled seccomp filter (installing it then allocates nothing).
pub(crate) struct ExecArgs<'a> {
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The PATH the command is looked up in.
    pub path: String,
    pub seccomp: &'a seccomp::JobFilter,
}

impl<'a> ExecArgs<'a> {
    fn new(plan: &LaunchPlan, seccomp: &'a seccomp::JobFilter) -> StepResult<ExecArgs<'a>> {
        // Validation refuses NUL bytes in every one of these strings.
        let c = |s: &String| CString::new(s.as_str()).map_err(|_| nix::Error::EINVAL);
        let all = |v: Vec<_>| v.into_iter().map(c).collect::<Result<_, _>>();
        let argv = all(std::iter::once(&plan.command).chain(&plan.args).collect());
        let path = env::search_path(&plan.env).to_owned();
        let nul = |e| StepError::new("a NUL byte", e);
        Ok(ExecArgs {
            argv: argv.map_err(&nul)?,
            envp: all(plan.env.iter().collect()).map_err(&nul)?,
            path,
            seccomp,
        })
    }
}

/// Forks the job's shim, which waits for [`release`], as a sibling of the caller
/// (`CLONE_PARENT`): the shim factory calls this, and the shim is the spawner's child. The write
/// ends of the output pipes go only to the shim (and then the job), so the pipes reach
/// end-of-file when the job is gone. `upload` is the staged upload directory.
///
/// Returns the shim's pid and its [`ShimEnds`].
pub fn fork_shim(
    plan: &LaunchPlan,
    seccomp: &seccomp::JobFilter,
    placement: Placement<'_>,
    upload: Option<BorrowedFd<'_>>,
) -> StepResult<(i32, ShimEnds)> {
    let exec = ExecArgs::new(plan, seccomp)?;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).at(|| "create a pipe");
    let ((stdout_r, stdout_w), (stderr_r, stderr_w)) = (pipe()?, pipe()?);
    let ((status_r, status_w), (go_r, go_w)) = (pipe()?, pipe()?);
    set_nonblocking(status_r.as_fd()).at(|| "make the status pipe non-blocking")?;
    for fd in [&stdout_w, &stderr_w] {
        if let Err(e) = fcntl(fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
            tracing::warn!(error = %e, "cannot raise an output pipe to 1 MiB; keeping the default");
        }
    }
    let fds = shim::Fds {
        fixed: [&stdout_r, &stderr_r, &status_r].map(|f| f.as_raw_fd()),
        working: [&go_r, &status_w, &stdout_w, &stderr_w].map(|f| f.as_raw_fd()),
        optional: [
            match &placement {
                Placement::CloneInto(fd) => Some(fd.as_raw_fd()),
                Placement::Join(_) => None,
            },
            upload.map(|u| u.as_raw_fd()),
        ],
    };
    let parent = libc::CLONE_PARENT as u64;
    // SAFETY: the factory is single-threaded (a loop reading one socket), so the child may
    // allocate and run ordinary code; it never returns from `shim::run`.
    let (pid, pidfd) = match unsafe { sys::clone3(parent, None) }.at(|| "fork the shim")? {
        Cloned::Child => shim::run(plan, &exec, fds, placement),
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop((stdout_w, stderr_w, status_w, go_r));
    Ok((pid, [pidfd, status_r, stdout_r, stderr_r, go_w]))
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_errors_cross_the_pipe() {
        assert_eq!(StepError::decode(&[]), None);
        let e = StepError {
            exit_code: 127,
            message: "command not found: x".into(),
        };
        assert_eq!(StepError::decode(&e.encode()), Some(e));
        assert_eq!(StepError::decode(&[1]).map(|e| e.exit_code), Some(-1));
        let long = StepError::msg("é".repeat(5000));
        assert!(long.encode().len() <= 4 + MAX_INIT_ERROR);
    }
}
