//! The job init: the first process in the job's namespaces. It is a copy of the shim (so of the
//! single-threaded spawner) and runs straight-line code: wait to be released, build the root,
//! drop to the job's identity, exec. Any failure is written to the error pipe, then `_exit`.

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;

use super::{
    At, ExecArgs, LaunchPlan, StepError, StepResult, exec, identity, netns, report, rootfs,
};

pub(super) struct Fds {
    /// Read end of the release pipe.
    pub sync: OwnedFd,
    /// Write end of the close-on-exec error pipe.
    pub error: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub(super) fn run(plan: &LaunchPlan, exec: &ExecArgs, fds: Fds) -> ! {
    // From here on these are plain numbers: `prepare_process` closes every fd but stdio and the
    // error pipe, so no owner may close them again later.
    let raw = Raw {
        error: fds.error.into_raw_fd(),
        stdout: fds.stdout.into_raw_fd(),
        stderr: fds.stderr.into_raw_fd(),
    };
    let Err(e) = setup_and_exec(plan, exec, fds.sync, &raw);
    let msg = report::encode_init_error(e.exit_code, &e.message);
    // SAFETY: `raw.error` is the error pipe's write end, open until exec or exit; the buffer
    // is valid for its length.
    unsafe { libc::write(raw.error, msg.as_ptr().cast(), msg.len()) };
    // SAFETY: ends this process without running destructors that belong to the spawner.
    unsafe { libc::_exit(1) }
}

struct Raw {
    error: RawFd,
    stdout: RawFd,
    stderr: RawFd,
}

fn setup_and_exec(
    plan: &LaunchPlan,
    args: &ExecArgs,
    sync: OwnedFd,
    fds: &Raw,
) -> Result<std::convert::Infallible, StepError> {
    wait_for_release(&sync)?;
    drop(sync);
    // Now in the job's cgroup (placed at clone time on v2, attached by the shim on v1), so the
    // new cgroup namespace is rooted at the job's own cgroup.
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).at(|| "unshare the cgroup namespace")?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    rootfs::build(plan)?;
    nix::unistd::sethostname(&plan.hostname).at(|| "set the hostname")?;
    netns::loopback_up()?;
    identity::drop_to(plan.uid, plan.gid)?;
    // Set after the identity change, which clears it. If the shim dies, nobody could report
    // this job's end: it must not run on unseen.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .at(|| "set the parent-death signal")?;
    // As the job user, so the job cannot start inside a directory it could not reach.
    nix::unistd::chdir(plan.work_dir.as_str())
        .at(|| format!("enter the work directory {}", plan.work_dir))?;
    exec::prepare_process(fds.stdout, fds.stderr, fds.error)?;
    Err(exec::exec(&plan.command, args))
}

fn wait_for_release(sync: &OwnedFd) -> StepResult {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(sync, &mut b) {
            Ok(1) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {
                return Err(StepError::msg(
                    "the shim went away before releasing the job",
                ));
            }
            Err(e) => return Err(StepError::new("wait to be released", e)),
        }
    }
}
