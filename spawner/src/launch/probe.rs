//! Start-up check that this host can run jobs the way the spawner runs them: every namespace,
//! the new mount API and pivot_root, tried for real in a short-lived child. The spawner refuses
//! to start, naming the missing feature, rather than fail at the first job.

use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::mounts::{self, NODEV, NOSUID, RDONLY};
use crate::sys::{self, Cloned};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("this host cannot run jobs: {0}")]
    Unsupported(&'static str),
    #[error("start-up check could not run: {0}")]
    Setup(String),
}

const STEPS: &[&str] = &[
    "ok",
    "mount namespaces (making mounts private)",
    "the new mount API (fsopen/fsmount for tmpfs)",
    "the new mount API (move_mount)",
    "the new mount API (open_tree/mount_setattr)",
    "cgroup namespaces (unshare CLONE_NEWCGROUP)",
    "pivot_root",
    "proc in a new pid namespace",
];

/// Runs the probe, using `scratch` (created and removed here) as a mount point.
pub fn check(scratch: &Path) -> Result<(), ProbeError> {
    for ns in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        if !Path::new("/proc/self/ns").join(ns).exists() {
            return Err(ProbeError::Unsupported(match ns {
                "pid" => "pid namespaces",
                "mnt" => "mount namespaces",
                "net" => "network namespaces",
                "ipc" => "ipc namespaces",
                "uts" => "uts namespaces",
                _ => "cgroup namespaces",
            }));
        }
    }
    let _ = std::fs::remove_dir(scratch);
    std::fs::create_dir(scratch)
        .map_err(|e| ProbeError::Setup(format!("create {}: {e}", scratch.display())))?;
    let result = run_child(scratch);
    let _ = std::fs::remove_dir(scratch);
    result
}

fn run_child(scratch: &Path) -> Result<(), ProbeError> {
    let flags = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    // SAFETY: called at start-up while the spawner is single-threaded; the child only runs
    // `child_steps` and `_exit`s.
    let cloned = unsafe { sys::clone3(flags.bits() as u64, None) }.map_err(|_| {
        ProbeError::Unsupported("clone3 with pid, mount, network, ipc and uts namespaces")
    })?;
    let pidfd = match cloned {
        Cloned::Child => {
            let code = child_steps(scratch);
            // SAFETY: ends the probe child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        Cloned::Parent { pidfd, .. } => pidfd,
    };
    let status = sys::reap_pidfd(pidfd.as_fd(), true)
        .map_err(|e| ProbeError::Setup(format!("wait for the probe: {e}")))?
        .ok_or_else(|| ProbeError::Setup("the probe vanished".into()))?;
    if !libc::WIFEXITED(status) {
        return Err(ProbeError::Setup(format!(
            "the probe died (status {status:#x})"
        )));
    }
    match STEPS.get(libc::WEXITSTATUS(status) as usize) {
        Some(&"ok") => Ok(()),
        Some(step) => Err(ProbeError::Unsupported(step)),
        None => Err(ProbeError::Setup(format!(
            "unexpected probe status {status:#x}"
        ))),
    }
}

/// Returns the index in [`STEPS`] of the first step that failed, 0 if all worked.
fn child_steps(scratch: &Path) -> i32 {
    if nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .is_err()
    {
        return 1;
    }
    let Ok(fs) = sys::new_fs(c"tmpfs", &[(c"size", c"64k")], NOSUID | NODEV) else {
        return 2;
    };
    let Ok(target) = mounts::cstr(&scratch.to_string_lossy()) else {
        return 3;
    };
    let Ok(target_fd) = nix::fcntl::open(
        target.as_c_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return 3;
    };
    if sys::move_mount_onto(fs.as_fd(), target_fd.as_fd()).is_err() {
        return 3;
    }
    let node = sys::open_tree_clone(None, c"/dev/null", false);
    if !node.is_ok_and(|n| sys::mount_setattr(n.as_fd(), RDONLY | NOSUID, false).is_ok()) {
        return 4;
    }
    if nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).is_err() {
        return 5;
    }
    let pivoted = nix::unistd::chdir(target.as_c_str()).is_ok()
        && sys::pivot_root(c".", c".").is_ok()
        && nix::mount::umount2(".", MntFlags::MNT_DETACH).is_ok();
    if !pivoted {
        return 6;
    }
    let _ = nix::unistd::chdir("/");
    if std::fs::create_dir("/proc").is_err() {
        return 7;
    }
    match sys::new_fs(c"proc", &[], NOSUID | NODEV) {
        Ok(p) => match nix::fcntl::open(
            "/proc",
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(t) if sys::move_mount_onto(p.as_fd(), t.as_fd()).is_ok() => 0,
            _ => 7,
        },
        Err(_) => 7,
    }
}
