//! Thin wrappers over the system calls that libc and nix do not wrap: pidfds, clone3, the new
//! mount API, capabilities. Each wrapper only converts arguments and errors; the policy lives in
//! the callers. Everything returns `nix::Result` so errors carry the errno by name.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use libc::{
    SYS_clone3, SYS_fsconfig, SYS_fsmount, SYS_fsopen, SYS_mount_setattr, SYS_move_mount,
    SYS_open_tree, syscall,
};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};

/// Converts a raw syscall return value that is an fd into an owned fd.
pub(crate) fn fd_result(ret: libc::c_long) -> nix::Result<OwnedFd> {
    let raw = RawFd::try_from(check(ret)?).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the kernel just returned this new fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A raw syscall return value, or the errno of a negative one.
pub(crate) fn check(ret: libc::c_long) -> nix::Result<libc::c_long> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

pub(crate) fn unit_result(ret: libc::c_long) -> nix::Result<()> {
    check(ret).map(drop)
}

/// `pidfd_open(2)`: a handle on a process that cannot be confused with a later reuse of its pid.
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain integer arguments; the kernel validates the pid.
    fd_result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_getfd(2)`: a duplicate of fd `target` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: integer arguments only; the kernel checks ptrace access and the fd number. The
    // returned fd is close-on-exec.
    fd_result(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) })
}

/// `pidfd_send_signal(2)`: signals exactly the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> nix::Result<()> {
    let null = std::ptr::null::<libc::siginfo_t>();
    // SAFETY: integer arguments and a null siginfo (the kernel then fills one as kill(2) would).
    let ret =
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, null, 0) };
    unit_result(ret)
}

/// SIGKILL to our child behind `pidfd`, then reaps it.
pub fn kill_and_reap(pidfd: BorrowedFd<'_>) {
    let _ = pidfd_send_signal(pidfd, Signal::SIGKILL);
    let _ = reap_pidfd(pidfd, true);
}

/// Whether the process behind `pidfd` has exited (the pidfd polls readable then).
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Reaps our child behind `pidfd` if it has exited (waiting for it with `block`); `ECHILD`
/// (not our child, or already reaped) is not an error. Returns the `waitpid`-style status
/// word, the encoding the records keep.
pub fn reap_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> nix::Result<Option<i32>> {
    let mut flags = WaitPidFlag::WEXITED;
    flags.set(WaitPidFlag::WNOHANG, !block);
    match waitid(Id::PIDFd(pidfd), flags) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some((code & 0xff) << 8)),
        Ok(WaitStatus::Signaled(_, sig, core)) => Ok(Some(sig as i32 | i32::from(core) << 7)),
        Ok(_) | Err(Errno::ECHILD) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The clone3 flag that places the child straight into a cgroup (not exported by libc for
/// every target).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What `clone3` returned.
pub enum Cloned {
    /// In the parent: the child's pid (in our pid namespace) and its pidfd.
    Parent { pid: i32, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// `clone3(2)` with fork semantics (no new stack, no shared memory) and a pidfd for the parent.
///
/// # Safety
/// As with `fork`, the calling process must be single-threaded, so that the child can use any
/// code (including the allocator) without meeting a lock held by a thread that no longer exists.
pub unsafe fn clone3(flags: u64, cgroup_fd: Option<BorrowedFd<'_>>) -> nix::Result<Cloned> {
    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is plain integers; zero means "not used" for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | libc::CLONE_PIDFD as u64;
    args.pidfd = (&raw mut pidfd) as u64;
    // With CLONE_PARENT the kernel takes the caller's own exit signal, and wants none here.
    if flags & libc::CLONE_PARENT as u64 == 0 {
        args.exit_signal = libc::SIGCHLD as u64;
    }
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    let size = size_of::<libc::clone_args>();
    // SAFETY: `args` is valid for the size we pass, `pidfd` outlives the call; the caller
    // guarantees the fork-like child may run our code (single-threaded process).
    match check(unsafe { syscall(SYS_clone3, &raw mut args, size) })? {
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent {
            pid: pid as i32,
            // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd that only we own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// `dir` for the *at calls: the fd, or the current directory.
fn at(dir: Option<BorrowedFd<'_>>) -> RawFd {
    dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd())
}

/// `flag` when `set`, else 0.
fn flag_if(set: bool, flag: libc::c_int) -> libc::c_uint {
    if set { flag as libc::c_uint } else { 0 }
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount (recursive) at `path`.
pub fn open_tree_clone(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    recursive: bool,
) -> nix::Result<OwnedFd> {
    let flags =
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | flag_if(recursive, libc::AT_RECURSIVE);
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    fd_result(unsafe { syscall(SYS_open_tree, at(dir), path.as_ptr(), flags) })
}

/// `mount_setattr(2)`: sets `attrs` (MOUNT_ATTR_*) on the mount at `path` relative to `dir`
/// (the current directory when `None`), or on the mount `dir` itself when `path` is empty.
pub fn mount_setattr(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    attrs: u64,
    recursive: bool,
) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags =
        flag_if(path.is_empty(), libc::AT_EMPTY_PATH) | flag_if(recursive, libc::AT_RECURSIVE);
    let size = size_of::<libc::mount_attr>();
    let (dir, path, attr) = (at(dir), path.as_ptr(), &raw const attr);
    // SAFETY: `path` is NUL-terminated; `attr` is valid for its size.
    unit_result(unsafe { syscall(SYS_mount_setattr, dir, path, flags, attr, size) })
}

/// `move_mount(2)`: attaches the detached mount `mnt` onto the object `target` refers to.
pub fn move_mount_onto(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> nix::Result<()> {
    let (from, to, empty) = (mnt.as_raw_fd(), target.as_raw_fd(), c"".as_ptr());
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both paths are empty strings used with the *_EMPTY_PATH flags, so the kernel
    // acts on the two fds.
    unit_result(unsafe { syscall(SYS_move_mount, from, empty, to, empty, flags) })
}

/// A new, detached filesystem instance: `fsopen` + `fsconfig` string options + `fsmount`
/// with `attrs` (MOUNT_ATTR_*). Returns the detached mount's fd.
pub fn new_fs(fstype: &CStr, options: &[(&CStr, &CStr)], attrs: u64) -> nix::Result<OwnedFd> {
    // SAFETY: `fstype` is NUL-terminated.
    let fs = fd_result(unsafe { syscall(SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })?;
    let config = |cmd: libc::c_uint, key: *const libc::c_char, value: *const libc::c_char| {
        // SAFETY: `key` and `value` are NUL-terminated strings, or null for a command.
        unit_result(unsafe { syscall(SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, 0) })
    };
    for (key, value) in options {
        config(libc::FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr())?;
    }
    let null = std::ptr::null();
    config(libc::FSCONFIG_CMD_CREATE, null, null)?;
    // SAFETY: no pointer arguments.
    fd_result(unsafe { syscall(SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, attrs) })
}

/// `close_range(2)`: closes every fd in `first..=last`.
pub fn close_range(first: u32, last: u32) -> nix::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: closes fds by number; callers own (or deliberately discard) every fd in range
    // and never use those numbers again.
    unit_result(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) })
}

/// Closes every fd except those in `keep` (any order).
pub fn close_all_except(keep: &[RawFd]) -> nix::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&f| u32::try_from(f).ok()).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next = 0u32;
    for k in keep {
        if k > next {
            close_range(next, k - 1)?;
        }
        next = k + 1;
    }
    close_range(next, u32::MAX)
}

/// Capability sets, one bit per capability (`CAP_*` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// The data of `capget(2)`/`capset(2)` version 3: effective, permitted and inheritable bits of
/// capabilities 0-31, then the same of 32-63. The header is the version and pid 0 (this thread).
type CapData = [[u32; 3]; 2];

/// `capget(2)` for this thread.
pub fn capget() -> nix::Result<CapSets> {
    let mut header = [CAP_VERSION_3, 0];
    let mut data: CapData = [[0; 3]; 2];
    // SAFETY: a version 3 header and a two-element data array, both live for the call.
    let ret = unsafe { libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()) };
    unit_result(ret)?;
    let join = |i: usize| u64::from(data[0][i]) | (u64::from(data[1][i]) << 32);
    Ok(CapSets {
        effective: join(0),
        permitted: join(1),
        inheritable: join(2),
    })
}

/// `capset(2)` for this thread.
pub fn capset(c: CapSets) -> nix::Result<()> {
    let mut header = [CAP_VERSION_3, 0];
    let sets = [c.effective, c.permitted, c.inheritable];
    let data: CapData = [sets.map(|v| v as u32), sets.map(|v| (v >> 32) as u32)];
    // SAFETY: a version 3 header and a two-element data array, both live for the call.
    unit_result(unsafe { libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()) })
}

/// Drops every capability not in `keep` from the bounding set.
pub fn drop_bounding_except(keep: u64) -> nix::Result<()> {
    for cap in (0..64u32).filter(|c| keep & (1 << c) == 0) {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        match (r, Errno::last()) {
            (0.., _) => {}
            // Past the last capability this kernel knows: all dropped.
            (_, Errno::EINVAL) => return Ok(()),
            (_, e) => return Err(e),
        }
    }
    Ok(())
}

/// Clears the ambient capability set.
pub fn clear_ambient() -> nix::Result<()> {
    let clear_all = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, clear_all, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
/// with the pid it names one process for the life of the system.
pub fn proc_start_ticks(pid: i32) -> nix::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    parse_start_ticks(&stat).ok_or(Errno::EINVAL)
}

/// Field 22 of a /proc/PID/stat line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; field 22 is the 20th.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn start_ticks_survive_hostile_names() {
        let line = "1234 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 20 21";
        assert_eq!(parse_start_ticks(line), Some(777));
        assert_eq!(parse_start_ticks("1 (x"), None);
        assert_eq!(parse_start_ticks("1 (x) R 1"), None);
    }

    #[test]
    fn own_start_ticks_are_readable() {
        let me = std::process::id() as i32;
        assert!(proc_start_ticks(me).unwrap() > 0);
    }

    #[test]
    fn reaped_statuses_read_like_waitpid() {
        let reap = |exit: i32, signal: i32| {
            // SAFETY: the child only makes async-signal-safe calls (kill, _exit).
            match unsafe { libc::fork() } {
                // SAFETY: in the child: signals itself and exits, nothing else.
                0 => unsafe {
                    if signal > 0 {
                        libc::kill(libc::getpid(), signal);
                    }
                    libc::_exit(exit)
                },
                pid => reap_pidfd(pidfd_open(pid).unwrap().as_fd(), true)
                    .unwrap()
                    .unwrap(),
            }
        };
        let exited = reap(3, 0);
        assert!(libc::WIFEXITED(exited) && libc::WEXITSTATUS(exited) == 3);
        let killed = reap(0, libc::SIGKILL);
        assert!(libc::WIFSIGNALED(killed) && libc::WTERMSIG(killed) == libc::SIGKILL);
    }

    #[test]
    fn capget_reads_this_thread() {
        let c = capget().unwrap();
        assert_eq!(c.effective & !c.permitted, 0);
    }
}
