//! The shim: one small root process per job, forked by the spawner's factory as the spawner's
//! child, that survives spawner restarts. It starts the job init in new namespaces, records how the launch went, waits for
//! the job, records its exit status, then holds the output pipes until the spawner (after the
//! exit was acknowledged and the output drained) kills it.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use super::{At, ExecArgs, LaunchPlan, Placement, ShimFds, StepError, StepResult, init, upload};
use crate::clock;
use crate::record::{EXIT, ExitFile, STARTED, StartedFile, bounded_message};
use crate::sys::{self, Cloned};

/// Raw fds the shim receives from the spawner (numbers valid in the forked child).
pub(super) struct Fds {
    /// stdout and stderr read ends and the status read end, kept at [`ShimFds`] numbers.
    pub fixed: [RawFd; 3],
    /// The release pipe's read end, the status pipe's write end, stdout's and stderr's write
    /// ends.
    pub working: [RawFd; 4],
    /// The cgroup directory (v2) and the staged uploads, when there are.
    pub optional: [Option<RawFd>; 2],
}

/// Namespaces of the job init. The cgroup namespace is unshared by the init itself once it is
/// in its cgroup: clone3 would root a new cgroup namespace at the *shim's* cgroup, because
/// namespaces are copied before `CLONE_INTO_CGROUP` moves the child. The network namespace is
/// the shim's own, fresh: the factory forked it there ([`super::netns`]).
const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS);

/// Lowest number for the shim's working fds, above the fixed ones.
const WORK_FD_BASE: RawFd = 10;

/// Ends a forked process (a shim, or the factory) at once.
pub(super) fn exit(code: i32) -> ! {
    // SAFETY: _exit ends this forked process at once without running the spawner's
    // destructors or atexit handlers, which belong to the parent.
    unsafe { libc::_exit(code) }
}

/// The shim's body. Never returns: it ends in `_exit` or waiting to be killed.
pub(super) fn run(plan: &LaunchPlan, exec: &ExecArgs, fds: Fds, placement: Placement<'_>) -> ! {
    // A new session: no terminal signals from the spawner's session, and a spawner killed with
    // its process group does not take the shim along.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"joblet-shim");
    let Some(([go, status, stdout, stderr], [cgroup, upload])) = arrange_fds(&fds) else {
        exit(1)
    };
    if !matches!(nix::unistd::read(&go, &mut [0u8]), Ok(1)) {
        // The spawner died before recording us: nothing was started, leave quietly.
        exit(0)
    }
    drop(go);
    let cgroup = cgroup.as_ref().map(|f| f.as_fd());
    let mut job_mounts = None;
    let ended = match launch(plan, exec, (stdout, stderr), cgroup, upload, &placement) {
        Ok((init, mounts)) => {
            job_mounts = mounts;
            let started = StartedFile {
                job_pid: init.0,
                started_ns: clock::realtime_ns(),
            };
            // Without the record nobody would learn that the job runs: it must not run unseen.
            if plan.dir.write(STARTED, &started).is_err() {
                sys::kill_and_reap(init.1.as_fd());
                exit(1)
            }
            poke(status.as_fd());
            let wait_status = loop {
                match sys::reap_pidfd(init.1.as_fd(), true) {
                    Ok(Some(s)) => break s,
                    Err(Errno::EINTR) => continue,
                    // Cannot happen for our own child; record it as a kill rather than hang.
                    Ok(None) | Err(_) => break libc::SIGKILL,
                }
            };
            ExitFile::Exited {
                wait_status,
                ended_ns: clock::realtime_ns(),
            }
        }
        Err(e) => ExitFile::LaunchFailed {
            exit_code: e.exit_code,
            message: bounded_message(e.message),
            ended_ns: clock::realtime_ns(),
        },
    };
    // The probe's shim has no pipes to keep for anyone: it must not outlive a spawner that
    // died during the probe.
    if plan.dir.write(EXIT, &ended).is_err() || plan.probe {
        exit(1)
    }
    poke(status.as_fd());
    // The job's exit is reported: its mounts may go now.
    drop(job_mounts);
    loop {
        nix::unistd::pause();
    }
}

/// Tells the spawner to look at the records again.
fn poke(status: BorrowedFd<'_>) {
    let _ = nix::unistd::write(status, &[1]);
}

/// Moves the fds the shim works with above [`WORK_FD_BASE`], closes everything else the
/// spawner had open (other jobs' pipes, client sockets, the listener), points stdin and stdout
/// at /dev/null (stderr stays the spawner's, for the rare diagnostic), and puts the fixed ones
/// at the [`ShimFds`] numbers.
fn arrange_fds(fds: &Fds) -> Option<([OwnedFd; 4], [Option<OwnedFd>; 2])> {
    let dup_high = |fd: RawFd| {
        // SAFETY: `fd` is open in this process (inherited across fork); F_DUPFD_CLOEXEC
        // returns a new fd that only we own.
        let new = fcntl(
            unsafe { BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_DUPFD_CLOEXEC(WORK_FD_BASE),
        );
        // SAFETY: the kernel just created `n` for us.
        new.ok().map(|n| unsafe { OwnedFd::from_raw_fd(n) })
    };
    let [a, b, c] = fds.fixed.map(dup_high);
    let fixed = [a?, b?, c?];
    let [a, b, c, d] = fds.working.map(dup_high);
    let working = [a?, b?, c?, d?];
    // Given but not duplicated is a failure (`None`); not given is `Some(None)`.
    let optional = |fd: Option<RawFd>| fd.map_or(Some(None), |fd| dup_high(fd).map(Some));
    let optional = [optional(fds.optional[0])?, optional(fds.optional[1])?];
    let kept = fixed
        .iter()
        .chain(&working)
        .chain(optional.iter().flatten());
    let mut all = vec![0, 1, 2];
    all.extend(kept.map(|f| f.as_raw_fd()));
    sys::close_all_except(&all).ok()?;
    let null = OFlag::O_RDWR | OFlag::O_CLOEXEC;
    let null = nix::fcntl::open(c"/dev/null", null, nix::sys::stat::Mode::empty()).ok()?;
    // dup2 atomically replaces stdin and stdout, which nothing here owns.
    nix::unistd::dup2_stdin(&null).ok()?;
    nix::unistd::dup2_stdout(&null).ok()?;
    // Closed before the fixed slots are filled: it took the lowest free number, one of them.
    drop(null);
    let targets = [ShimFds::STDOUT, ShimFds::STDERR, ShimFds::STATUS];
    for (src, target) in fixed.iter().zip(targets) {
        // SAFETY: `src` is open; the fixed slots were closed above and are owned by no one, so
        // dup2 gives the only copy at the well-known number.
        if unsafe { libc::dup2(src.as_raw_fd(), target) } < 0 {
            return None;
        }
    }
    Some((working, optional))
}

/// Starts the job init and waits until it exec'd or failed. Returns the init's pid and pidfd,
/// and its mount namespace when it could be held (see below).
fn launch(
    plan: &LaunchPlan,
    exec: &ExecArgs,
    (stdout, stderr): (OwnedFd, OwnedFd),
    cgroup: Option<BorrowedFd<'_>>,
    upload: Option<OwnedFd>,
    placement: &Placement<'_>,
) -> StepResult<((i32, OwnedFd), Option<OwnedFd>)> {
    // Read here, as host root, and handed to the init in its copy of our memory: the init may
    // run in a user namespace where the frontend's files are not readable.
    let uploads = upload.map(|u| upload::read(u, plan.disk_mb)).transpose()?;
    let cgroups = match placement {
        Placement::Join(dirs) => open_tasks_files(dirs)?,
        Placement::CloneInto(_) => Vec::new(),
    };
    let (sync_r, sync_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).at(|| "create the sync pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).at(|| "create the error pipe")?;
    let mut flags = NAMESPACES;
    flags.set(CloneFlags::CLONE_NEWUSER, plan.userns.is_some());
    // SAFETY: the shim is single-threaded (a fork of the single-threaded factory), so the
    // child may run ordinary code; `init::run` never returns.
    let cloned =
        unsafe { sys::clone3(flags.bits() as u64, cgroup) }.at(|| "clone3 the job init")?;
    let (pid, pidfd) = match cloned {
        Cloned::Child => {
            drop((sync_w, err_r));
            let fds = init::Fds {
                sync: sync_r,
                error: err_w,
                stdout,
                stderr,
                cgroups,
            };
            init::run(plan, exec, fds, uploads.as_deref().unwrap_or_default())
        }
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
    };
    // Held so that the job's exit does not wait for its forty-odd mounts to be torn down (and
    // for the RCU grace period that follows), which would delay its report; the shim lets go
    // once the exit is recorded. Only a matter of timing: without it, nothing changes.
    let ns = format!("/proc/{pid}/ns/mnt");
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mounts = nix::fcntl::open(ns.as_str(), flags, Mode::empty()).ok();
    drop((sync_r, err_w, stdout, stderr, uploads, cgroups));
    let prepared = prepare_init(plan, pid, &pidfd)
        .and_then(|()| nix::unistd::write(&sync_w, &[1]).at(|| "release the job init"));
    if let Err(e) = prepared {
        sys::kill_and_reap(pidfd.as_fd());
        return Err(e);
    }
    drop(sync_w);
    if let Some(e) = StepError::decode(&read_to_end(err_r, super::MAX_INIT_ERROR + 4)) {
        let _ = sys::reap_pidfd(pidfd.as_fd(), true);
        return Err(e);
    }
    Ok(((pid, pidfd), mounts))
}

/// cgroup v1: the `tasks` file of the job's directory in every hierarchy, opened here as host
/// root (the kernel checks the opener's credentials) for the init to write itself into.
fn open_tasks_files(dirs: &[PathBuf]) -> StepResult<Vec<OwnedFd>> {
    let open = |dir: &PathBuf| {
        let path = dir.join("tasks");
        let file = std::fs::OpenOptions::new().write(true).open(&path);
        let file = file.at(|| format!("open {}", path.display()))?;
        Ok(OwnedFd::from(file))
    };
    dirs.iter().map(open).collect()
}

/// What the shim does for the init while it waits to be released: its user namespace's id
/// maps, and the copy of its pidfd a restarted spawner takes.
fn prepare_init(plan: &LaunchPlan, pid: i32, pidfd: &OwnedFd) -> StepResult {
    if let Some((base, range)) = plan.userns {
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{map}"), format!("0 {base} {range}\n"))
                .at(|| format!("write the job's {map} (0 {base} {range})"))?;
        }
    }
    // SAFETY: dup2 onto the fixed pidfd slot, which is unused in the shim (closed by
    // arrange_fds); a restarted spawner finds the init's pidfd there.
    if unsafe { libc::dup2(pidfd.as_raw_fd(), ShimFds::JOB_PIDFD) } < 0 {
        return Err(StepError::new("keep the job's pidfd", Errno::last()));
    }
    Ok(())
}

/// At most `max` bytes, up to end of file (`Read` retries EINTR; a read error ends it early).
fn read_to_end(fd: OwnedFd, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = std::fs::File::from(fd)
        .take(max as u64)
        .read_to_end(&mut out);
    out
}
