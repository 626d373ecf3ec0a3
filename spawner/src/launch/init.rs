//! The job init: the first process in the job's namespaces. It is a copy of the shim (so of
//! the single-threaded factory and spawner) and runs straight-line code: wait to be released,
//! build the root, copy the uploads, drop to the job's identity, enforce Landlock and seccomp,
//! exec. Any failure is written to the error pipe, then `_exit`.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::path::Path;

use nix::{sched::CloneFlags, sys::stat::Mode};

use super::{At, ExecArgs, LaunchPlan, StepError, exec, identity, landlock};
use super::{rootfs, seccomp, upload};

pub(super) struct Fds {
    /// Read end of the release pipe.
    pub sync: OwnedFd,
    /// Write end of the close-on-exec error pipe.
    pub error: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// cgroup v1: the `tasks` file of the job's cgroup in every hierarchy.
    pub cgroups: Vec<OwnedFd>,
}

pub(super) fn run(plan: &LaunchPlan, exec: &ExecArgs, fds: Fds, uploads: &[upload::Entry]) -> ! {
    // From here on the error pipe is a plain number: `prepare_process` closes every fd but stdio
    // and it, so no owner may close it again later.
    let error = fds.error.into_raw_fd();
    let io = (fds.stdout, fds.stderr, error);
    let Err(e) = setup_and_exec(plan, exec, (fds.sync, fds.cgroups), uploads, io);
    let msg = e.encode();
    // SAFETY: `error` is the error pipe's write end, open until exec or exit; the buffer is
    // valid for its length.
    unsafe { libc::write(error, msg.as_ptr().cast(), msg.len()) };
    // SAFETY: ends this process without running destructors that belong to the spawner.
    unsafe { libc::_exit(1) }
}

fn setup_and_exec(
    plan: &LaunchPlan,
    args: &ExecArgs,
    (sync, cgroups): (OwnedFd, Vec<OwnedFd>),
    uploads: &[upload::Entry],
    (stdout, stderr, error): (OwnedFd, OwnedFd, i32),
) -> Result<std::convert::Infallible, StepError> {
    if !matches!(nix::unistd::read(&sync, &mut [0u8]), Ok(1)) {
        return Err(StepError::msg(
            "the shim went away before releasing the job",
        ));
    }
    drop(sync);
    // cgroup v1, before anything else runs here: "0" in `tasks` moves the writing thread
    // itself, the one migration the kernel makes without taking its global threadgroup lock
    // for writing, which waits for an RCU grace period (10-20 ms per job when the shim wrote
    // the init's pid into `cgroup.procs`). The init is single-threaded, so it moves whole.
    for tasks in cgroups {
        nix::unistd::write(&tasks, b"0").at(|| "join the job's cgroup")?;
    }

    if plan.userns.is_some() {
        // Still the shim's host ids, unmapped here: become root of the new namespace (its
        // maps are written now), whose ids are the job's range on the host.
        let (gid, uid) = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
        nix::unistd::setresgid(gid, gid, gid).at(|| "become root of the user namespace")?;
        nix::unistd::setresuid(uid, uid, uid).at(|| "become root of the user namespace")?;
    }
    // Now in the job's cgroup (placed at clone time on v2, joined above on v1), so the
    // new cgroup namespace is rooted at the job's own cgroup.
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).at(|| "unshare the cgroup namespace")?;
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    // Our cwd is the base, which the new mount namespace maps to its own copy: the init never
    // walks a host path to it.
    rootfs::build(plan)?;
    // Built in the new root, while the init may still open every path of the policy.
    let ruleset = match plan.landlock {
        true => Some(landlock::build_ruleset(Path::new("/")).map_err(StepError::of)?),
        false => None,
    };
    nix::unistd::sethostname(&plan.hostname).at(|| "set the hostname")?;
    upload::write(uploads, plan)?;
    identity::drop_to(plan.uid, plan.gid)?;
    // Consumed here: its fd must be closed before `prepare_process` closes every other one.
    if let Some(r) = ruleset {
        landlock::restrict_self(&r).map_err(StepError::of)?;
    }
    // Set after the identity change, which clears it. If the shim dies, nobody could report
    // this job's end: it must not run on unseen.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .at(|| "set the parent-death signal")?;
    // As the job user, so the job cannot start inside a directory it could not reach.
    nix::unistd::chdir(plan.work_dir.as_str())
        .at(|| format!("enter the work directory {}", plan.work_dir))?;
    exec::prepare_process(stdout, stderr, error)?;
    seccomp::install(args.seccomp).map_err(StepError::of)?;
    if plan.probe {
        // SAFETY: the start-up probe ends here, having done every step a job goes through.
        unsafe { libc::_exit(0) }
    }
    Err(exec::exec(&plan.command, args))
}
