//! Signalling the members of a cgroup without ever hitting a stranger.
//!
//! A pid read from `cgroup.procs` may exit and be reused by an unrelated process before we
//! signal it. So each pid is first pinned with a pidfd (the number cannot be reused while the
//! pidfd is open), membership is read again, and only pinned processes still in the cgroup
//! are signalled, through their pidfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

use super::error::CgroupError;

/// Pidfds held at once: a job may hold thousands of processes, far more than a default
/// `RLIMIT_NOFILE` of 1024 allows us to pin together.
const PIN_BATCH: usize = 128;

/// Signals every process of `pids` that `members()` still lists after pinning. Returns how
/// many were signalled. Processes that exit meanwhile are skipped silently.
pub(super) fn signal_members(
    pids: &[i32],
    members: impl Fn() -> Result<Vec<i32>, CgroupError>,
    sig: Signal,
) -> Result<usize, CgroupError> {
    let mut sent = 0;
    for batch in pids.chunks(PIN_BATCH) {
        sent += signal_batch(batch, &members, sig)?;
    }
    Ok(sent)
}

fn signal_batch(
    pids: &[i32],
    members: &impl Fn() -> Result<Vec<i32>, CgroupError>,
    sig: Signal,
) -> Result<usize, CgroupError> {
    let mut pinned = Vec::with_capacity(pids.len());
    for &pid in pids {
        match pidfd_open(pid) {
            Ok(fd) => pinned.push((pid, Some(fd))),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            // Kernels before 5.3 have no pidfd; fall back to kill(2) (the tiny reuse window
            // is then unavoidable).
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => pinned.push((pid, None)),
            Err(source) => return Err(CgroupError::Signal { pid, source }),
        }
    }
    let mut now = members()?;
    now.sort_unstable();
    let mut sent = 0;
    for (pid, fd) in pinned
        .iter()
        .filter(|(pid, _)| now.binary_search(pid).is_ok())
    {
        let r = match fd {
            Some(fd) => pidfd_send_signal(fd, sig),
            None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), sig)
                .map_err(io::Error::from),
        };
        match r {
            Ok(()) => sent += 1,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(source) => return Err(CgroupError::Signal { pid: *pid, source }),
        }
    }
    Ok(sent)
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or -1; no memory
    // is passed to the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(fd: &OwnedFd, sig: Signal) -> io::Result<()> {
    // SAFETY: the pidfd is open for the duration of the call (borrowed), the siginfo pointer
    // is NULL (the kernel then fills in a plain kill-style siginfo), flags are 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
