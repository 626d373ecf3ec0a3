//! The last steps before the job's command runs: its stdio, no other fds, default signal
//! handling, ordinary limits; then the command lookup and `execve`.

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};

use super::{At, ExecArgs, StepError, StepResult, env};
use crate::sys;

/// The usual soft fd limit; the spawner raised its own, the job gets the customary one.
const JOB_NOFILE: u64 = 1024;

/// stdin from /dev/null, stdout and stderr the output pipes; closes every other fd except the
/// close-on-exec error pipe; unblocks and resets every signal.
pub(super) fn prepare_process(stdout: OwnedFd, stderr: OwnedFd, error: RawFd) -> StepResult {
    let null = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let null = nix::fcntl::open(c"/dev/null", null, nix::sys::stat::Mode::empty());
    let null = null.at(|| "open /dev/null")?;
    // Every source fd is >= 3 (0-2 were open when they were created), so no dup2 below
    // overwrites another source, and closing the sources leaves stdio alone.
    nix::unistd::dup2_stdin(&null).at(|| "set up stdin")?;
    nix::unistd::dup2_stdout(&stdout).at(|| "set up stdout")?;
    nix::unistd::dup2_stderr(&stderr).at(|| "set up stderr")?;
    drop((null, stdout, stderr));
    // The error pipe is close-on-exec: it closes by itself if exec succeeds.
    sys::close_all_except(&[0, 1, 2, error]).at(|| "close inherited fds")?;
    reset_signals()?;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).at(|| "read RLIMIT_NOFILE")?;
    let soft = JOB_NOFILE.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).at(|| "set RLIMIT_NOFILE")
}

/// The spawner blocks SIGTERM/SIGINT (signalfd) and the Rust runtime ignores SIGPIPE; both
/// survive exec, so undo them for the job.
fn reset_signals() -> StepResult {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).at(|| "unblock signals")?;
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code, so no signal-safety concerns arise.
        unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }
            .at(|| format!("reset {sig}"))?;
    }
    Ok(())
}

/// Looks `command` up as execvp would (in the job's PATH) and execs it. Returns only on
/// failure: 127 when not found, 126 when found but not executable.
pub(super) fn exec(command: &str, args: &ExecArgs) -> StepError {
    let mut denied = None;
    for candidate in env::candidates(command, &args.path) {
        let Ok(c) = CString::new(candidate.as_str()) else {
            continue;
        };
        match nix::unistd::execve(&c, &args.argv, &args.envp) {
            Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
            Err(Errno::EACCES) => {
                denied.get_or_insert(candidate);
            }
            Err(e) => return StepError::exit(126, format!("cannot execute {candidate}: {e}")),
            Ok(never) => match never {},
        }
    }
    match denied {
        Some(c) => StepError::exit(126, format!("permission denied: {c} is not executable")),
        None => StepError::exit(127, format!("command not found: {command}")),
    }
}
