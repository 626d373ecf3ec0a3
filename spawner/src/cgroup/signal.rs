//! Signalling the members of a cgroup without ever hitting a stranger.
//!
//! A pid read from `cgroup.procs` may exit and be reused by an unrelated process before we
//! signal it. So each pid is first pinned with a pidfd (the number cannot be reused while the
//! pidfd is open), membership is read again, and only pinned processes still in the cgroup
//! are signalled, through their pidfd.

use std::os::fd::AsFd;

use nix::{errno::Errno, sys::signal::Signal};

use super::error::CgroupError;
use crate::sys;

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
        let mut pinned = Vec::with_capacity(batch.len());
        for &pid in batch {
            match sys::pidfd_open(pid) {
                Ok(fd) => pinned.push((pid, fd)),
                Err(Errno::ESRCH | Errno::EINVAL) => {}
                Err(e) => return Err(CgroupError::Signal(pid, e.into())),
            }
        }
        let mut now = members()?;
        now.sort_unstable();
        for (pid, fd) in pinned
            .iter()
            .filter(|(pid, _)| now.binary_search(pid).is_ok())
        {
            match sys::pidfd_send_signal(fd.as_fd(), sig) {
                Ok(()) => sent += 1,
                Err(Errno::ESRCH) => {}
                Err(e) => return Err(CgroupError::Signal(*pid, e.into())),
            }
        }
    }
    Ok(sent)
}
