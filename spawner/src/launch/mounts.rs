//! Mount helpers for building the job's root, on the new mount API: a mount is created or
//! cloned detached, given its flags while detached (so it is never writable, not even for a
//! moment), then attached onto a mount point found by walking the new root one component at a
//! time without following symlinks (so nothing can redirect a mount outside the new root).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{At, StepError, StepResult};
use crate::sys;

pub(super) const RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;
pub(super) const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
pub(super) const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
pub(super) const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;

pub(super) fn cstr(s: &str) -> StepResult<CString> {
    CString::new(s).map_err(|_| StepError::msg(format!("{s:?} holds a NUL byte")))
}

fn open_path(dir: BorrowedFd<'_>, name: &CStr, directory: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if directory {
        flags |= OFlag::O_DIRECTORY;
    }
    nix::fcntl::openat(dir, name, flags, Mode::empty())
}

/// The components of a relative path inside the job root; refuses anything but plain names.
fn names(rel: &Path) -> StepResult<Vec<CString>> {
    rel.components()
        .filter(|c| !matches!(c, Component::RootDir))
        .map(|c| match c {
            Component::Normal(n) => cstr(&n.to_string_lossy()),
            _ => Err(StepError::msg(format!(
                "{} is not a plain path",
                rel.display()
            ))),
        })
        .collect()
}

/// Opens (creating as needed, mode 0755) the directory `rel` under `root`, refusing symlinks.
pub(super) fn ensure_dir(root: BorrowedFd<'_>, rel: &Path) -> StepResult<OwnedFd> {
    let step = || format!("create the mount point /{}", rel.display());
    let mut cur = open_path(root, c".", true).at(step)?;
    for name in names(rel)? {
        let next = match open_path(cur.as_fd(), &name, true) {
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    cur.as_fd(),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(StepError::new(step(), e)),
                }
                open_path(cur.as_fd(), &name, true)
            }
            other => other,
        };
        cur = next.at(step)?;
    }
    Ok(cur)
}

/// Opens (creating an empty file as needed) the file `rel` under `root`, as a mount point.
pub(super) fn ensure_file(root: BorrowedFd<'_>, rel: &Path) -> StepResult<OwnedFd> {
    let step = || format!("create the mount point /{}", rel.display());
    let parent = ensure_dir(root, rel.parent().unwrap_or(Path::new("")))?;
    let name = names(rel)?.pop().ok_or_else(|| StepError::msg(step()))?;
    match open_path(parent.as_fd(), &name, false) {
        Err(Errno::ENOENT) => {
            let flags = OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_WRONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            drop(
                nix::fcntl::openat(
                    parent.as_fd(),
                    name.as_c_str(),
                    flags,
                    Mode::from_bits_truncate(0o644),
                )
                .at(step)?,
            );
            open_path(parent.as_fd(), &name, false).at(step)
        }
        other => other.at(step),
    }
}

/// Attaches the detached mount `mnt` onto `target`.
pub(super) fn attach(mnt: &OwnedFd, target: &OwnedFd, what: &str) -> StepResult {
    sys::move_mount_onto(mnt.as_fd(), target.as_fd()).at(|| format!("mount {what}"))
}

/// Binds the host path `host` read-only, nosuid, nodev at the same place under `root`. A
/// symlink (Debian's `/bin` → `usr/bin`) shows its target's content; a missing path is skipped.
pub(super) fn bind_host_readonly(root: BorrowedFd<'_>, host: &Path) -> StepResult {
    let what = host.display();
    let meta = match std::fs::metadata(host) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StepError::msg(format!("inspect {what}: {e}"))),
    };
    let src = cstr(&host.to_string_lossy())?;
    let tree =
        sys::open_tree_clone(None, &src, true).at(|| format!("clone the mount of {what}"))?;
    sys::mount_setattr(tree.as_fd(), RDONLY | NOSUID | NODEV, true)
        .at(|| format!("make {what} read-only"))?;
    let rel = host.strip_prefix("/").unwrap_or(host);
    let target = if meta.is_dir() {
        ensure_dir(root, rel)?
    } else {
        ensure_file(root, rel)?
    };
    attach(&tree, &target, &format!("{what} read-only"))
}

/// Binds one host device node (e.g. `null`) into the job's `/dev`.
pub(super) fn bind_device(dev: BorrowedFd<'_>, name: &str) -> StepResult {
    let src = cstr(&format!("/dev/{name}"))?;
    let node = sys::open_tree_clone(None, &src, false).at(|| format!("clone /dev/{name}"))?;
    sys::mount_setattr(node.as_fd(), NOSUID | NOEXEC, false)
        .at(|| format!("restrict /dev/{name}"))?;
    let target = ensure_file(dev, Path::new(name))?;
    attach(&node, &target, &format!("/dev/{name}"))
}
