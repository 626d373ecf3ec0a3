//! OOM notifications for the spawner's poll loop.
//!
//! v1: an eventfd registered through `cgroup.event_control` on `memory.oom_control`; it
//! becomes readable (POLLIN). v2: `memory.events` itself, which raises POLLPRI when any of
//! its counters changes (kernfs always reports POLLIN, so poll it for POLLPRI only).
//! Either way a wake-up is a hint: the spawner compares `oom_kills()` before and after. The
//! v1 eventfd also fires once when the cgroup is removed.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::error::CgroupError;
use super::files;

pub(super) fn watch_v1(memory_dir: &Path) -> Result<OwnedFd, CgroupError> {
    let control_path = memory_dir.join("cgroup.event_control");
    let fail = |source: std::io::Error| CgroupError::OomWatch {
        path: control_path.clone(),
        source,
    };
    let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| fail(e.into()))?;
    let oom_control_path = memory_dir.join("memory.oom_control");
    let oom_control = File::open(&oom_control_path).map_err(|source| CgroupError::Open {
        path: oom_control_path,
        source,
    })?;
    // "<eventfd> <fd of the file to watch>"; the kernel takes its own references, so the
    // oom_control file may be closed once this returns.
    let registration = format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd());
    files::write(&control_path, &registration)?;
    Ok(OwnedFd::from(efd))
}

pub(super) fn watch_v2(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let path = dir.join("memory.events");
    let mut f = File::open(&path).map_err(|source| CgroupError::OomWatch {
        path: path.clone(),
        source,
    })?;
    // kernfs reports an event to a new file until it has been read once: read to arm it.
    let mut buf = [0u8; 512];
    f.read(&mut buf)
        .map_err(|source| CgroupError::Read { path, source })?;
    Ok(OwnedFd::from(f))
}

/// Clears a v1 eventfd after it fired.
pub(super) fn ack_v1(fd: BorrowedFd<'_>) -> Result<(), CgroupError> {
    let mut buf = [0u8; 8];
    match nix::unistd::read(fd, &mut buf) {
        Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
        Err(e) => Err(CgroupError::Read {
            path: "OOM eventfd".into(),
            source: e.into(),
        }),
    }
}

/// Re-arms a v2 `memory.events` fd after POLLPRI: kernfs clears the event on a read.
pub(super) fn ack_v2(fd: BorrowedFd<'_>) -> Result<(), CgroupError> {
    let mut buf = [0u8; 512];
    nix::sys::uio::pread(fd, &mut buf, 0)
        .map(|_| ())
        .map_err(|e| CgroupError::Read {
            path: "memory.events fd".into(),
            source: e.into(),
        })
}
