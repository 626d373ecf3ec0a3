//! The job's Landlock layer, with raw syscalls: the filesystem as the job may use it, and (from
//! ABI 6) no signals or abstract unix sockets across the job's boundary.
//!
//! Applied in two steps inside the job init, after `pivot_root` (so the paths are the job's):
//! [`build_ruleset`] opens the paths of [`POLICY`] and returns a ready ruleset fd; later, once
//! no_new_privs is set, [`restrict_self`] enforces it. The init closes inherited fds before
//! `execve`: call [`restrict_self`] before that.
//!
//! Rights add up along a path: everything below `/` is readable and executable, and the rows
//! for `/work`, `/tmp` … add writing there. What no row grants is refused with `EACCES`; making
//! device nodes (`MAKE_CHAR`, `MAKE_BLOCK`) is granted nowhere.
//!
//! ABI handling: the kernel's ABI is read at run time and rights it does not know are dropped
//! (they cannot be enforced, and asking for them fails). ABI 1 lacks `REFER` (moving files
//! between directories is then always refused), ABI 3 adds `TRUNCATE`, ABI 5 `IOCTL_DEV`, ABI 6
//! the scopes. No Landlock at all is [`LandlockError::Unavailable`], which the spawner turns into
//! "refuse to start" when it is configured to enforce Landlock.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use libc::{
    SYS_landlock_add_rule, SYS_landlock_create_ruleset, SYS_landlock_restrict_self, c_uint, syscall,
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use crate::sys;

// Filesystem rights, `<linux/landlock.h>`.
pub const EXECUTE: u64 = 1 << 0;
pub const WRITE_FILE: u64 = 1 << 1;
pub const READ_FILE: u64 = 1 << 2;
pub const READ_DIR: u64 = 1 << 3;
pub const REMOVE_DIR: u64 = 1 << 4;
pub const REMOVE_FILE: u64 = 1 << 5;
pub const MAKE_CHAR: u64 = 1 << 6;
pub const MAKE_DIR: u64 = 1 << 7;
pub const MAKE_REG: u64 = 1 << 8;
pub const MAKE_SOCK: u64 = 1 << 9;
pub const MAKE_FIFO: u64 = 1 << 10;
pub const MAKE_BLOCK: u64 = 1 << 11;
pub const MAKE_SYM: u64 = 1 << 12;
/// ABI 2: link or rename a file into another directory.
pub const REFER: u64 = 1 << 13;
/// ABI 3: `truncate`, `ftruncate`, `open(O_TRUNC)`.
pub const TRUNCATE: u64 = 1 << 14;
/// ABI 5: `ioctl` on device files.
pub const IOCTL_DEV: u64 = 1 << 15;

// Scopes (ABI 6).
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
pub const SCOPE_SIGNAL: u64 = 1 << 1;

const CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

/// The 13 rights of ABI 1 (`EXECUTE` to `MAKE_SYM`).
const ABI_1_RIGHTS: u64 = (1 << 13) - 1;
/// The rights later ABIs added, with the ABI that added each.
const ADDED_RIGHTS: [(u32, u64); 3] = [(2, REFER), (3, TRUNCATE), (5, IOCTL_DEV)];

/// Rights that apply to a file (a rule on a non-directory may hold only these).
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

const READ_EXEC: u64 = EXECUTE | READ_FILE | READ_DIR;
#[rustfmt::skip]
const READ_WRITE: u64 = READ_FILE | READ_DIR | WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE
    | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER;
/// `O_TRUNC` is what shells use for `> /dev/null`; terminal programs need ioctls.
const DEVICE_WRITE: u64 = WRITE_FILE | TRUNCATE | IOCTL_DEV;

/// One path the job may use beyond reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRule {
    /// Absolute, in the job's root.
    pub path: &'static str,
    pub access: u64,
    /// A required path that is missing is an error; others are skipped (nothing to grant).
    pub required: bool,
    pub why: &'static str,
}

const fn rule(path: &'static str, access: u64, why: &'static str) -> PathRule {
    PathRule {
        path,
        access,
        required: false,
        why,
    }
}

#[rustfmt::skip]
pub const POLICY: &[PathRule] = &[
    PathRule { path: "/", access: READ_EXEC, required: true,
        why: "the job's read-only root of allowed host paths: programs and libraries run from anywhere" },
    rule("/work", READ_WRITE, "the job's workspace (its quota): it builds and runs its own code there"),
    rule("/tmp", READ_WRITE, "scratch space, on the same quota as /work"),
    rule("/dev/shm", READ_WRITE, "POSIX shared memory and semaphores (mounted noexec)"),
    rule("/dev/null", DEVICE_WRITE, "output sink; writing touches nothing"),
    rule("/dev/zero", DEVICE_WRITE, "writes are discarded"),
    rule("/dev/full", DEVICE_WRITE, "writes fail with ENOSPC, used to test programs"),
    rule("/dev/tty", DEVICE_WRITE, "the controlling terminal, if the job has one"),
    rule("/dev/pts", DEVICE_WRITE, "pseudo-terminals (and ptmx) of jobs that open one"),
];

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock is unavailable: {reason}")]
    Unavailable { reason: &'static str },
    #[error("query the Landlock ABI version: {0}")]
    Probe(Errno),
    #[error("create the Landlock ruleset: {0}")]
    CreateRuleset(Errno),
    #[error("open {} for a Landlock rule: {errno}", path.display())]
    OpenPath { path: PathBuf, errno: Errno },
    #[error("add the Landlock rule for {}: {errno}", path.display())]
    AddRule { path: PathBuf, errno: Errno },
    #[error("enforce the Landlock ruleset: {errno}{}", restrict_hint(*errno))]
    RestrictSelf { errno: Errno },
}

fn restrict_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EPERM => " (set no_new_privs first)",
        Errno::E2BIG => " (too many stacked Landlock domains: 16 at most)",
        _ => "",
    }
}

/// A ruleset ready to enforce, built in the job's root.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
    /// The kernel's Landlock ABI the ruleset was built for (signals and abstract unix sockets
    /// are confined to the job from 6 on, [`scopes`]).
    pub abi: u32,
    /// Optional policy paths that did not exist in the root (nothing granted for them).
    pub skipped: Vec<&'static str>,
}

/// The running kernel's Landlock ABI version (≥ 1), or why there is none.
pub fn abi() -> Result<u32, LandlockError> {
    let (null, version) = (std::ptr::null::<RulesetAttr>(), CREATE_RULESET_VERSION);
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION the kernel reads no attribute (NULL, 0) and
    // returns the ABI version; no memory is shared.
    let ret = unsafe { syscall(SYS_landlock_create_ruleset, null, 0usize, version) };
    let ret = sys::check(ret).map_err(|e| match e {
        Errno::ENOSYS => LandlockError::Unavailable {
            reason: "the kernel was built without it (CONFIG_SECURITY_LANDLOCK)",
        },
        Errno::EOPNOTSUPP => LandlockError::Unavailable {
            reason: "it is disabled at boot (add `landlock` to the kernel's `lsm=` list)",
        },
        e => LandlockError::Probe(e),
    })?;
    let reason = "the kernel reports no usable ABI version";
    u32::try_from(ret)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or(LandlockError::Unavailable { reason })
}

/// Filesystem rights the kernel of `abi` knows (all of them are handled, i.e. refused unless
/// granted).
pub fn fs_rights(abi: u32) -> u64 {
    let known = ADDED_RIGHTS.iter().filter(|(since, _)| abi >= *since);
    known.fold(ABI_1_RIGHTS, |rights, (_, right)| rights | right)
}

/// Scopes enforced at `abi`.
pub fn scopes(abi: u32) -> u64 {
    match abi {
        6.. => SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL,
        _ => 0,
    }
}

/// What a rule may grant: the known rights, and only file rights on a non-directory.
pub fn effective_access(requested: u64, abi: u32, is_dir: bool) -> u64 {
    let access = requested & fs_rights(abi);
    if is_dir { access } else { access & FILE_RIGHTS }
}

/// Builds the [`POLICY`] ruleset for a job whose root is `root` (`/` after `pivot_root`; the
/// tests use a temporary directory).
pub fn build_ruleset(root: &Path) -> Result<Ruleset, LandlockError> {
    let abi = abi()?;
    let fd = create_ruleset(abi)?;
    let mut skipped = Vec::new();
    for rule in POLICY {
        let path = root.join(rule.path.trim_start_matches('/'));
        let opened = nix::fcntl::open(&path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
        let (parent, stat) = match opened.and_then(|p| nix::sys::stat::fstat(&p).map(|s| (p, s))) {
            Ok(opened) => opened,
            Err(Errno::ENOENT) if !rule.required => {
                skipped.push(rule.path);
                continue;
            }
            Err(errno) => return Err(LandlockError::OpenPath { path, errno }),
        };
        let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let access = effective_access(rule.access, abi, is_dir);
        if access == 0 {
            continue;
        }
        add_path_rule(fd.as_fd(), parent.as_fd(), access)
            .map_err(|errno| LandlockError::AddRule { path, errno })?;
    }
    Ok(Ruleset { fd, abi, skipped })
}

/// Enforces the ruleset on the calling thread and everything it starts from now on. Requires
/// no_new_privs (or CAP_SYS_ADMIN). Only a syscall: safe right before `execve`.
pub fn restrict_self(ruleset: &Ruleset) -> Result<(), LandlockError> {
    let fd = ruleset.fd.as_raw_fd();
    // SAFETY: plain integer arguments; the kernel only looks the fd up.
    let ret = unsafe { syscall(SYS_landlock_restrict_self, fd, 0 as c_uint) };
    sys::unit_result(ret).map_err(|errno| LandlockError::RestrictSelf { errno })
}

/// `struct landlock_ruleset_attr`.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

fn create_ruleset(abi: u32) -> Result<OwnedFd, LandlockError> {
    // Network rights stay unhandled: the job's network namespace is the network boundary.
    let attr = RulesetAttr {
        handled_access_fs: fs_rights(abi),
        handled_access_net: 0,
        scoped: scopes(abi),
    };
    let (attr, size) = (&raw const attr, size_of::<RulesetAttr>());
    // SAFETY: `attr` is a live `landlock_ruleset_attr` of the size passed; kernels that know a
    // shorter struct accept it because the fields they do not know are zero on those ABIs.
    let ret = unsafe { syscall(SYS_landlock_create_ruleset, attr, size, 0 as c_uint) };
    // A new ruleset fd, close-on-exec, that nothing else owns.
    sys::fd_result(ret).map_err(LandlockError::CreateRuleset)
}

fn add_path_rule(
    ruleset: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    access: u64,
) -> Result<(), Errno> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    let (ruleset, attr) = (ruleset.as_raw_fd(), &raw const attr);
    // SAFETY: `attr` is a live `landlock_path_beneath_attr`; the kernel copies it and only looks
    // the two fds up.
    let ret = unsafe {
        syscall(
            SYS_landlock_add_rule,
            ruleset,
            RULE_PATH_BENEATH,
            attr,
            0 as c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(fs_rights(1), 0x1fff);
        assert_eq!(fs_rights(2), 0x3fff);
        assert_eq!(fs_rights(3), 0x7fff);
        assert_eq!(
            fs_rights(4),
            fs_rights(3),
            "ABI 4 added only network rights"
        );
        assert_eq!(fs_rights(5), 0xffff);
        assert_eq!(fs_rights(7), fs_rights(5));
        assert_eq!(scopes(5), 0);
        assert_eq!(scopes(6), SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL);
    }

    #[test]
    fn unknown_rights_and_directory_rights_on_files_are_dropped() {
        assert_eq!(effective_access(DEVICE_WRITE, 1, false), WRITE_FILE);
        assert_eq!(
            effective_access(DEVICE_WRITE, 3, false),
            WRITE_FILE | TRUNCATE
        );
        assert_eq!(effective_access(DEVICE_WRITE, 7, false), DEVICE_WRITE);
        assert_eq!(
            effective_access(READ_WRITE, 1, true),
            READ_WRITE & !(REFER | TRUNCATE)
        );
        assert_eq!(
            effective_access(READ_WRITE, 7, false),
            READ_FILE | WRITE_FILE | TRUNCATE
        );
        assert_eq!(effective_access(READ_EXEC, 7, true), READ_EXEC);
    }

    #[test]
    fn the_policy_is_well_formed() {
        let mut paths: Vec<_> = POLICY.iter().map(|r| r.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), POLICY.len(), "duplicate paths");
        for r in POLICY {
            assert!(r.path.starts_with('/'), "{} is absolute", r.path);
            assert!(!r.path.contains(".."), "{}", r.path);
            assert_eq!(
                r.access & !fs_rights(7),
                0,
                "{} grants unknown rights",
                r.path
            );
            assert_eq!(
                r.access & (MAKE_CHAR | MAKE_BLOCK),
                0,
                "{} grants mknod",
                r.path
            );
            assert!(r.why.len() > 10, "{}", r.path);
        }
        assert_eq!(
            POLICY.iter().filter(|r| r.required).count(),
            1,
            "only / is required"
        );
    }
}
