//! Thin wrappers over the system calls that libc and nix do not wrap: pidfds, clone3, the new
//! mount API, capabilities. Each wrapper only converts arguments and errors; the policy lives in
//! the callers. Everything returns `nix::Result` so errors carry the errno by name.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Converts a raw syscall return value that is an fd into an owned fd.
fn fd_result(ret: libc::c_long) -> nix::Result<OwnedFd> {
    if ret < 0 {
        return Err(Errno::last());
    }
    let raw = RawFd::try_from(ret).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the kernel just returned this new fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn unit_result(ret: libc::c_long) -> nix::Result<()> {
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
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
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: nix::sys::signal::Signal) -> nix::Result<()> {
    // SAFETY: integer arguments and a null siginfo (the kernel then fills one as kill(2) would).
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
}

/// Whether the process behind `pidfd` has exited (the pidfd polls readable then).
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our stack, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// Reaps our child behind `pidfd` if it has exited; `ECHILD` (not our child, or already
/// reaped) is not an error. Returns the raw wait status when a child was reaped.
pub fn reap_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> nix::Result<Option<i32>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    // SAFETY: `info` is a valid, writable siginfo_t; P_PIDFD takes the fd as the id.
    let ret = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        )
    };
    if ret < 0 {
        return match Errno::last() {
            Errno::ECHILD => Ok(None),
            e => Err(e),
        };
    }
    // SAFETY: waitid filled `info` for a child state change (or left si_pid 0 with WNOHANG).
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(wait_status_from(code, status)))
}

/// Rebuilds a `waitpid`-style status word from waitid's (si_code, si_status), so records
/// store one familiar encoding.
pub fn wait_status_from(code: i32, status: i32) -> i32 {
    match code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        _ => status & 0x7f,
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
    args.pidfd = std::ptr::addr_of_mut!(pidfd) as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is valid for the size we pass, `pidfd` outlives the call; the caller
    // guarantees the fork-like child may run our code (single-threaded process).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        r if r < 0 => Err(Errno::last()),
        0 => Ok(Cloned::Child),
        pid => {
            // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd that only we own.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Cloned::Parent {
                pid: pid as i32,
                pidfd,
            })
        }
    }
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount (recursive) at `path`.
pub fn open_tree_clone(
    dirfd: Option<BorrowedFd<'_>>,
    path: &CStr,
    recursive: bool,
) -> nix::Result<OwnedFd> {
    let dir = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    fd_result(unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) })
}

/// `mount_setattr(2)` on a detached mount fd: sets `attrs` (MOUNT_ATTR_*) on it.
pub fn mount_setattr(mnt: BorrowedFd<'_>, attrs: u64, recursive: bool) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: empty path with AT_EMPTY_PATH operates on `mnt`; `attr` is valid for its size.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
}

/// `mount_setattr(2)` on the mount at `path` (not recursive).
pub fn mount_setattr_path(path: &CStr, attrs: u64) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated; `attr` is valid for its size.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
}

/// `move_mount(2)`: attaches the detached mount `mnt` onto the object `target` refers to.
pub fn move_mount_onto(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: both paths are empty strings used with the *_EMPTY_PATH flags, so the kernel
    // acts on the two fds.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}

/// A new, detached filesystem instance: `fsopen` + `fsconfig` string options + `fsmount`
/// with `attrs` (MOUNT_ATTR_*). Returns the detached mount's fd.
pub fn new_fs(fstype: &CStr, options: &[(&CStr, &CStr)], attrs: u64) -> nix::Result<OwnedFd> {
    // SAFETY: `fstype` is NUL-terminated.
    let fs = fd_result(unsafe {
        libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC)
    })?;
    for (key, value) in options {
        // SAFETY: key and value are NUL-terminated strings valid for the call.
        unit_result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: no pointer arguments.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: no pointer arguments.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs,
        )
    })
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
    // SAFETY: both paths are NUL-terminated.
    unit_result(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
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

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capget(2)` for this thread.
pub fn capget() -> nix::Result<CapSets> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 requires.
    unit_result(unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) })?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// `capset(2)` for this thread.
pub fn capset(sets: CapSets) -> nix::Result<()> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: header and a two-element data array, as version 3 requires.
    unit_result(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) })
}

/// The highest capability number this kernel knows.
pub fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops every capability not in `keep` from the bounding set.
pub fn drop_bounding_except(keep: u64) -> nix::Result<()> {
    for cap in 0..=cap_last_cap() {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if r < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// Clears the ambient capability set.
pub fn clear_ambient() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
/// with the pid it names one process for the life of the system.
pub fn proc_start_ticks(pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_ticks(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no start time"),
        )
    })
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
    fn wait_status_encoding_matches_waitpid() {
        let exited = wait_status_from(libc::CLD_EXITED, 3);
        assert!(libc::WIFEXITED(exited));
        assert_eq!(libc::WEXITSTATUS(exited), 3);
        let killed = wait_status_from(libc::CLD_KILLED, 9);
        assert!(libc::WIFSIGNALED(killed));
        assert_eq!(libc::WTERMSIG(killed), 9);
        let dumped = wait_status_from(libc::CLD_DUMPED, 11);
        assert!(libc::WIFSIGNALED(dumped));
        assert_eq!(libc::WTERMSIG(dumped), 11);
    }

    #[test]
    fn capget_reads_this_thread() {
        let c = capget().unwrap();
        assert_eq!(c.effective & !c.permitted, 0);
    }
}
