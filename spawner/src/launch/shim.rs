//! The shim: one small root process per job, forked from the spawner, that survives spawner
//! restarts. It starts the job init in new namespaces, tells the spawner how the launch went,
//! waits for the job, records its exit status, then holds the output pipes until the spawner
//! (after the exit was acknowledged and the output drained) kills it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sched::CloneFlags;

use super::report::{self, ShimReport};
use super::{ExecArgs, LaunchPlan, Placement, ShimFds, init};
use crate::clock;
use crate::record::{ExitFile, StartedFile, bounded_message};
use crate::sys::{self, Cloned};

/// Raw fds the shim receives from the spawner (numbers valid in the forked child).
pub(super) struct Fds {
    pub stdout_r: RawFd,
    pub stderr_r: RawFd,
    pub stdout_w: RawFd,
    pub stderr_w: RawFd,
    pub status_r: RawFd,
    pub status_w: RawFd,
    pub go_r: RawFd,
}

/// Namespaces of the job init. The cgroup namespace is unshared by the init itself once it is
/// in its cgroup: clone3 would root a new cgroup namespace at the *shim's* cgroup, because
/// namespaces are copied before `CLONE_INTO_CGROUP` moves the child.
const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS);

/// Lowest number for the shim's working fds, above the fixed ones.
const WORK_FD_BASE: RawFd = 10;

/// The shim's body. Never returns: it ends in `_exit` or waiting to be killed.
pub(super) fn run(plan: &LaunchPlan, exec: &ExecArgs, fds: Fds, placement: Placement<'_>) -> ! {
    // A new session: no terminal signals from the spawner's session, and a spawner killed with
    // its process group does not take the shim along.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"joblet-shim");
    let cgroup_fd = match &placement {
        Placement::CloneInto(fd) => Some(fd.as_raw_fd()),
        Placement::Attach(_) => None,
    };
    let Some(mine) = arrange_fds(&fds, cgroup_fd) else {
        // SAFETY: _exit ends this forked process at once without running the spawner's
        // destructors or atexit handlers, which belong to the parent.
        unsafe { libc::_exit(1) }
    };
    let mut buf = [0u8; 1];
    if !matches!(nix::unistd::read(&mine.go, &mut buf), Ok(1)) {
        // The spawner died before recording us: nothing was started, leave quietly.
        // SAFETY: as above.
        unsafe { libc::_exit(0) }
    }
    drop(mine.go);
    let status = mine.status_w;
    let cgroup = mine.cgroup.as_ref().map(|f| f.as_fd());
    let outcome = launch(
        plan,
        exec,
        (mine.stdout_w, mine.stderr_w),
        cgroup,
        &placement,
        status.as_fd(),
    );
    match outcome {
        Ok(init_pidfd) => {
            let wait_status = loop {
                match sys::reap_pidfd(init_pidfd.as_fd(), true) {
                    Ok(Some(s)) => break s,
                    Err(Errno::EINTR) => continue,
                    // Cannot happen for our own child; record it as a kill rather than hang.
                    Ok(None) | Err(_) => break libc::SIGKILL,
                }
            };
            finish(
                plan,
                status.as_fd(),
                ExitFile::Exited {
                    wait_status,
                    ended_ns: clock::realtime_ns(),
                },
            );
        }
        Err(e) => finish(
            plan,
            status.as_fd(),
            ExitFile::LaunchFailed {
                exit_code: e.exit_code,
                message: bounded_message(e.message),
                ended_ns: clock::realtime_ns(),
            },
        ),
    }
}

/// Records the end, reports it, then waits to be killed while holding the pipes.
fn finish(plan: &LaunchPlan, status: BorrowedFd<'_>, exit: ExitFile) -> ! {
    let _ = plan.dir.write_exit(&exit);
    send(status, &ShimReport::Ended(exit));
    loop {
        nix::unistd::pause();
    }
}

fn send(status: BorrowedFd<'_>, r: &ShimReport) {
    let _ = nix::unistd::write(status, &report::encode(r));
}

/// The shim's own fds after [`arrange_fds`]; the fixed-number ones are not owned here.
struct Mine {
    go: OwnedFd,
    status_w: OwnedFd,
    stdout_w: OwnedFd,
    stderr_w: OwnedFd,
    cgroup: Option<OwnedFd>,
}

/// Puts the pipes' read ends and the status read end at their fixed numbers, keeps the working
/// fds above [`WORK_FD_BASE`], and closes everything else the spawner had open.
fn arrange_fds(fds: &Fds, cgroup: Option<RawFd>) -> Option<Mine> {
    let dup_high = |fd: RawFd| -> Option<OwnedFd> {
        // SAFETY: `fd` is open in this process (inherited across fork); F_DUPFD_CLOEXEC
        // returns a new fd that only we own.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(b, FcntlArg::F_DUPFD_CLOEXEC(WORK_FD_BASE))
            .ok()
            .map(|n| {
                // SAFETY: the kernel just created `n` for us.
                unsafe { OwnedFd::from_raw_fd(n) }
            })
    };
    let fixed = [
        (dup_high(fds.stdout_r)?, ShimFds::STDOUT),
        (dup_high(fds.stderr_r)?, ShimFds::STDERR),
        (dup_high(fds.status_r)?, ShimFds::STATUS),
    ];
    let mine = Mine {
        go: dup_high(fds.go_r)?,
        status_w: dup_high(fds.status_w)?,
        stdout_w: dup_high(fds.stdout_w)?,
        stderr_w: dup_high(fds.stderr_w)?,
        cgroup: match cgroup {
            Some(fd) => Some(dup_high(fd)?),
            None => None,
        },
    };
    let mut keep = vec![0, 1, 2];
    keep.extend(fixed.iter().map(|(f, _)| f.as_raw_fd()));
    keep.extend([&mine.go, &mine.status_w, &mine.stdout_w, &mine.stderr_w].map(|f| f.as_raw_fd()));
    keep.extend(mine.cgroup.as_ref().map(|f| f.as_raw_fd()));
    // Everything the spawner owned (other jobs' pipes, client sockets, the listener) goes.
    sys::close_all_except(&keep).ok()?;
    // stdin and stdout to /dev/null; stderr stays the spawner's, for the rare diagnostic.
    let null = nix::fcntl::open(
        c"/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    for target in [0, 1] {
        // SAFETY: `null` is open; dup2 atomically replaces stdio, which nothing here owns.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return None;
        }
    }
    drop(null);
    for (src, target) in &fixed {
        // SAFETY: `src` is open; the fixed slots were closed above and are owned by no one, so
        // dup2 gives the only copy at the well-known number.
        if unsafe { libc::dup2(src.as_raw_fd(), *target) } < 0 {
            return None;
        }
    }
    Some(mine)
}

/// Starts the job init and waits until it exec'd or failed. Returns the init's pidfd.
fn launch(
    plan: &LaunchPlan,
    exec: &ExecArgs,
    (stdout_w, stderr_w): (OwnedFd, OwnedFd),
    cgroup: Option<BorrowedFd<'_>>,
    placement: &Placement<'_>,
    status: BorrowedFd<'_>,
) -> Result<OwnedFd, super::StepError> {
    use super::At;
    let (sync_r, sync_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).at(|| "create the sync pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).at(|| "create the error pipe")?;
    // SAFETY: the shim is single-threaded (a fork of the single-threaded spawner), so the
    // child may run ordinary code; `init::run` never returns.
    let cloned =
        unsafe { sys::clone3(NAMESPACES.bits() as u64, cgroup) }.at(|| "clone3 the job init")?;
    let (pid, pidfd) = match cloned {
        Cloned::Child => {
            drop((sync_w, err_r));
            init::run(
                plan,
                exec,
                init::Fds {
                    sync: sync_r,
                    error: err_w,
                    stdout: stdout_w,
                    stderr: stderr_w,
                },
            )
        }
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop((sync_r, err_w, stdout_w, stderr_w));
    let kill_and_reap = |e: super::StepError| {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), nix::sys::signal::Signal::SIGKILL);
        let _ = sys::reap_pidfd(pidfd.as_fd(), true);
        e
    };
    if let Placement::Attach(attach) = placement {
        attach(pid)
            .map_err(|e| super::StepError::msg(format!("attach the job to its cgroup: {e}")))
            .map_err(kill_and_reap)?;
    }
    // SAFETY: dup2 onto the fixed pidfd slot, which is unused in the shim (closed by
    // arrange_fds); a restarted spawner finds the init's pidfd there.
    if unsafe { libc::dup2(pidfd.as_raw_fd(), ShimFds::JOB_PIDFD) } < 0 {
        return Err(kill_and_reap(super::StepError::new(
            "keep the job's pidfd",
            Errno::last(),
        )));
    }
    nix::unistd::write(&sync_w, &[1])
        .at(|| "release the job init")
        .map_err(kill_and_reap)?;
    drop(sync_w);
    let failure = read_to_end(err_r.as_fd(), report::MAX_INIT_ERROR + 4);
    if let Some((exit_code, message)) = report::decode_init_error(&failure) {
        let _ = sys::reap_pidfd(pidfd.as_fd(), true);
        return Err(super::StepError { exit_code, message });
    }
    let started = StartedFile {
        job_pid: pid,
        started_ns: clock::realtime_ns(),
    };
    let _ = plan.dir.write_started(&started);
    send(status, &ShimReport::Started(started));
    Ok(pidfd)
}

fn read_to_end(fd: BorrowedFd<'_>, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while out.len() < max {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    out.truncate(max);
    out
}
