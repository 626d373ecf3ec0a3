//! The job's root filesystem, assembled in the job's mount namespace:
//!
//! | path | what | flags |
//! |---|---|---|
//! | `/` | small tmpfs, read-only once built | nosuid, nodev |
//! | allowed host paths | recursive binds | read-only, nosuid, nodev |
//! | `/proc` | proc of the job's pid namespace | nosuid, nodev, noexec |
//! | `/dev` | tmpfs with binds of null, zero, full, random, urandom, tty; devpts at `/dev/pts` | nosuid, noexec |
//! | `/work`, `/tmp`, `/dev/shm` | three directories of **one** tmpfs of the job's disk size | nosuid, nodev (+noexec for shm) |
//! | `/etc/{passwd,group,hostname,hosts}` | generated unless an allowed path provides them | (root: read-only) |
//!
//! Sharing one tmpfs between every writable place means the disk limit cannot be escaped by
//! writing somewhere else, and filling it gives ENOSPC to this job only.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::mounts::{self, NODEV, NOEXEC, NOSUID, RDONLY, attach, cstr, ensure_dir};
use super::{At, LaunchPlan, StepError, StepResult};
use crate::sys;

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub(super) fn build(plan: &LaunchPlan) -> StepResult {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .at(|| "make every mount private")?;
    let root = mount_root(&plan.dir.root_mountpoint())?;
    let mut allowed: Vec<&PathBuf> = plan.allowed_mounts.iter().collect();
    // Parents before children, so a nested path lands inside its parent's bind.
    allowed.sort();
    for host in allowed {
        mounts::bind_host_readonly(root.as_fd(), host)?;
    }
    let proc_fs = sys::new_fs(c"proc", &[], NOSUID | NODEV | NOEXEC).at(|| "create /proc")?;
    attach(
        &proc_fs,
        &ensure_dir(root.as_fd(), Path::new("proc"))?,
        "/proc",
    )?;
    build_dev(root.as_fd())?;
    build_writable(root.as_fd(), plan)?;
    write_etc(root.as_fd(), plan)?;
    enter(root)
}

/// Mounts the root tmpfs on the job's (host-side) mount point and opens it.
fn mount_root(mountpoint: &Path) -> StepResult<OwnedFd> {
    let fs = sys::new_fs(
        c"tmpfs",
        &[(c"size", c"1m"), (c"mode", c"0755")],
        NOSUID | NODEV,
    )
    .at(|| "create the root tmpfs")?;
    let mp = cstr(&mountpoint.to_string_lossy())?;
    let open = || {
        nix::fcntl::openat(
            nix::fcntl::AT_FDCWD,
            mp.as_c_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .at(|| format!("open {}", mountpoint.display()))
    };
    attach(&fs, &open()?, "the root tmpfs")?;
    // Opened again: the earlier fd names the directory underneath the new mount.
    open()
}

fn build_dev(root: BorrowedFd<'_>) -> StepResult {
    let fs = sys::new_fs(
        c"tmpfs",
        &[(c"size", c"64k"), (c"mode", c"0755")],
        NOSUID | NOEXEC,
    )
    .at(|| "create /dev")?;
    attach(&fs, &ensure_dir(root, Path::new("dev"))?, "/dev")?;
    let dev = ensure_dir(root, Path::new("dev"))?;
    for name in DEVICES {
        mounts::bind_device(dev.as_fd(), name)?;
    }
    let links: [(&CStr, &CStr); 5] = [
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
        (c"pts/ptmx", c"ptmx"),
    ];
    for (target, name) in links {
        nix::unistd::symlinkat(target, dev.as_fd(), name)
            .at(|| format!("link /dev/{}", name.to_string_lossy()))?;
    }
    let pts = sys::new_fs(
        c"devpts",
        &[(c"ptmxmode", c"0666"), (c"mode", c"0620")],
        NOSUID | NOEXEC,
    )
    .at(|| "create /dev/pts")?;
    attach(
        &pts,
        &ensure_dir(dev.as_fd(), Path::new("pts"))?,
        "/dev/pts",
    )
}

/// Where the writable space is staged inside the root while its three views are cloned.
const STAGING: &str = ".writable";

/// One tmpfs of the job's disk size, shown at /work (the job's), /tmp and /dev/shm (1777).
///
/// Kernels before 6.15 refuse `open_tree(OPEN_TREE_CLONE)` on a mount that is not attached
/// to a namespace (EINVAL on Debian 12's 6.1), so the new tmpfs is attached at a hidden
/// staging point first, the views are cloned from there, and the staging mount is detached
/// again before the root becomes read-only.
fn build_writable(root: BorrowedFd<'_>, plan: &LaunchPlan) -> StepResult {
    let size = cstr(&format!("{}m", plan.disk_mb))?;
    let fs = sys::new_fs(
        c"tmpfs",
        &[(c"size", size.as_c_str()), (c"mode", c"0755")],
        NOSUID | NODEV,
    )
    .at(|| format!("create the {} MiB writable space", plan.disk_mb))?;
    attach(
        &fs,
        &ensure_dir(root, Path::new(STAGING))?,
        "the writable space",
    )?;
    // Opened again: the earlier fd names the directory underneath the new mount.
    let staged = ensure_dir(root, Path::new(STAGING))?;
    let places: [(&CStr, &str, u32, u64); 3] = [
        (c"work", "work", 0o755, NOSUID | NODEV),
        (c"tmp", "tmp", 0o1777, NOSUID | NODEV),
        (c"shm", "dev/shm", 0o1777, NOSUID | NODEV | NOEXEC),
    ];
    for (sub, _, mode, _) in places {
        let m = Mode::from_bits_truncate(mode);
        nix::sys::stat::mkdirat(staged.as_fd(), sub, m)
            .at(|| format!("create /{}", sub.to_string_lossy()))?;
        // Explicitly: mkdirat applies the umask.
        nix::sys::stat::fchmodat(
            staged.as_fd(),
            sub,
            m,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .at(|| format!("set the mode of /{}", sub.to_string_lossy()))?;
    }
    nix::unistd::fchownat(
        staged.as_fd(),
        c"work",
        Some(Uid::from_raw(plan.uid)),
        Some(Gid::from_raw(plan.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .at(|| "give /work to the job user")?;
    for (sub, target, _, attrs) in places {
        let tree = sys::open_tree_clone(Some(staged.as_fd()), sub, false)
            .at(|| format!("clone /{target}"))?;
        sys::mount_setattr(tree.as_fd(), attrs, false).at(|| format!("restrict /{target}"))?;
        attach(
            &tree,
            &ensure_dir(root, Path::new(target))?,
            &format!("/{target}"),
        )?;
    }
    drop(staged);
    let staging = plan.dir.root_mountpoint().join(STAGING);
    nix::mount::umount2(&staging, MntFlags::MNT_DETACH).at(|| "detach the staging mount")?;
    nix::unistd::unlinkat(root, STAGING, nix::unistd::UnlinkatFlags::RemoveDir)
        .at(|| "remove the staging directory")
}

/// The generated /etc files: accounts for root, nobody and the job user, the job's name.
pub(super) fn etc_files(uid: u32, gid: u32, hostname: &str) -> [(&'static str, String); 4] {
    let mut passwd = String::from(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    if uid != 65534 {
        passwd.push_str(&format!("job:x:{uid}:{gid}:job:/work:/bin/sh\n"));
    }
    let mut group = String::from("root:x:0:\nnogroup:x:65534:\n");
    if gid != 65534 {
        group.push_str(&format!("job:x:{gid}:\n"));
    }
    [
        ("passwd", passwd),
        ("group", group),
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ),
    ]
}

fn write_etc(root: BorrowedFd<'_>, plan: &LaunchPlan) -> StepResult {
    let etc = ensure_dir(root, Path::new("etc"))?;
    for (name, content) in etc_files(plan.uid, plan.gid, &plan.hostname) {
        let step = || format!("write /etc/{name}");
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(etc.as_fd(), name, flags, Mode::from_bits_truncate(0o644)) {
            // An allowed host path already provides it.
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(StepError::new(step(), e)),
            Ok(fd) => std::fs::File::from(fd)
                .write_all(content.as_bytes())
                .map_err(|e| StepError::msg(format!("{}: {e}", step())))?,
        }
    }
    Ok(())
}

/// pivot_root into the new root, detach the host's, make the root mount read-only.
fn enter(root: OwnedFd) -> StepResult {
    nix::unistd::fchdir(&root).at(|| "enter the new root")?;
    drop(root);
    sys::pivot_root(c".", c".").at(|| "pivot_root")?;
    // The old root now sits on top of the new one at "."; detach it and everything below.
    nix::mount::umount2(".", MntFlags::MNT_DETACH).at(|| "detach the host root")?;
    nix::unistd::chdir("/").at(|| "chdir /")?;
    sys::mount_setattr_path(c"/", RDONLY | NOSUID | NODEV).at(|| "make the root read-only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_for_nobody_and_a_custom_user() {
        let files = etc_files(65534, 65534, "job-0b7c1a2e");
        assert_eq!(files[0].1.lines().count(), 2);
        assert!(files[3].1.contains("127.0.0.1\tlocalhost job-0b7c1a2e"));
        let files = etc_files(1500, 1501, "job-x");
        assert!(files[0].1.contains("job:x:1500:1501:"));
        assert!(files[1].1.contains("job:x:1501:"));
        assert_eq!(files[2].1, "job-x\n");
    }
}
