//! Mount helpers for building the job's root, on the new mount API: a mount is created or
//! cloned detached, given its flags while detached (so it is never writable, not even for a
//! moment), then attached onto a mount point found by walking the new root one component at a
//! time without following symlinks (so nothing can redirect a mount outside the new root).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::{errno::Errno, fcntl::OFlag, sys::stat::Mode};

use super::{At, StepError, StepResult};
use crate::sys;

pub(super) const RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;
pub(super) const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
pub(super) const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
pub(super) const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;

pub(super) fn cstr(s: &str) -> StepResult<CString> {
    CString::new(s).map_err(|_| StepError::msg(format!("{s:?} holds a NUL byte")))
}

/// An `O_PATH` handle on `name` in `dir`, never through a symlink.
pub(super) fn open_path(dir: BorrowedFd<'_>, name: &CStr, directory: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    flags.set(OFlag::O_DIRECTORY, directory);
    nix::fcntl::openat(dir, name, flags, Mode::empty())
}

/// Opens (creating as needed: directories 0755, a final file empty 0644) `rel` under `root`,
/// refusing symlinks and anything but plain names.
pub(super) fn ensure(root: BorrowedFd<'_>, rel: &Path, directory: bool) -> StepResult<OwnedFd> {
    let step = || format!("create the mount point /{}", rel.display());
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => names.push(cstr(&n.to_string_lossy())?),
            _ => {
                let why = format!("{} is not a plain path", rel.display());
                return Err(StepError::msg(why));
            }
        }
    }
    let last = names.len();
    let file_flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir_mode = Mode::from_bits_truncate(0o755);
    let file_mode = Mode::from_bits_truncate(0o644);
    let mut cur = open_path(root, c".", true).at(step)?;
    for (i, name) in names.iter().enumerate() {
        let (dir, at) = (directory || i + 1 < last, name.as_c_str());
        let next = match open_path(cur.as_fd(), name, dir) {
            Err(Errno::ENOENT) => {
                let made = match dir {
                    true => nix::sys::stat::mkdirat(&cur, at, dir_mode),
                    false => nix::fcntl::openat(&cur, at, file_flags, file_mode).map(drop),
                };
                made.or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
                    .and_then(|()| open_path(cur.as_fd(), name, dir))
            }
            other => other,
        };
        cur = next.at(step)?;
    }
    Ok(cur)
}

/// Attaches the detached mount `mnt` onto `target`.
pub(super) fn attach(mnt: &OwnedFd, target: &OwnedFd, what: &str) -> StepResult {
    sys::move_mount_onto(mnt.as_fd(), target.as_fd()).at(|| format!("mount {what}"))
}

/// A bind of `path` (relative to `dir`, or absolute), restricted with `attrs` while detached,
/// attached onto `target`.
pub(super) fn bind(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    recursive: bool,
    attrs: u64,
    target: &OwnedFd,
    what: &str,
) -> StepResult {
    let tree = sys::open_tree_clone(dir, path, recursive).at(|| format!("clone {what}"))?;
    sys::mount_setattr(Some(tree.as_fd()), c"", attrs, recursive)
        .at(|| format!("restrict {what}"))?;
    attach(&tree, target, what)
}

/// Binds the host path `host` read-only, nosuid, nodev at the same place under `root`. A
/// symlink (Debian's `/bin` → `usr/bin`) shows its target's content; a missing path is skipped.
/// With `dirs_only`, a file only gets its mount point. Returns whether `host` is a file.
pub(super) fn bind_host(root: BorrowedFd<'_>, host: &Path, dirs_only: bool) -> StepResult<bool> {
    let meta = match std::fs::metadata(host) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StepError::new(format!("inspect {}", host.display()), e)),
    };
    let rel = host.strip_prefix("/").unwrap_or(host);
    let (file, target) = (!meta.is_dir(), ensure(root, rel, meta.is_dir())?);
    if !(dirs_only && file) {
        let src = cstr(&host.to_string_lossy())?;
        let what = format!("{} read-only", host.display());
        bind(None, &src, true, RDONLY | NOSUID | NODEV, &target, &what)?;
    }
    Ok(file)
}
