//! The job's root filesystem, assembled in the job's mount namespace:
//!
//! | path | what | flags |
//! |---|---|---|
//! | `/` | small tmpfs, read-only once built | nosuid, nodev |
//! | allowed host paths | recursive binds | read-only, nosuid, nodev |
//! | `/proc` | proc of the job's pid namespace, sensitive paths masked (see [`mask_proc`]) | nosuid, nodev, noexec |
//! | `/dev` | tmpfs with binds of null, zero, full, random, urandom, tty; devpts at `/dev/pts` | nosuid, noexec |
//! | `/work`, `/tmp`, `/dev/shm` | three directories of **one** tmpfs of the job's disk size | nosuid, nodev (+noexec for shm) |
//! | `/etc/{passwd,group,hostname,hosts}` | generated unless an allowed path provides them | (root: read-only) |
//!
//! `/sys` is absent. Sharing one tmpfs between every writable place means the disk limit
//! cannot be escaped by writing somewhere else, and filling it gives ENOSPC to this job only.
//! That tmpfs is memory, charged to the job's memory cgroup: it has no block device, so io
//! limits apply to the allowed host paths only.
//!
//! Everything here works as root of the job's user namespace when it has one: the mounts are
//! new instances (tmpfs, proc, devpts) or binds, which such a root may make.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::mounts::{self, NODEV, NOEXEC, NOSUID, RDONLY, attach, bind, cstr, ensure};
use super::{At, LaunchPlan, StepError, StepResult};
use crate::sys;

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// /proc files hidden behind an empty read-only file (those that exist), as runc does.
const MASKED_FILES: [&CStr; 10] = [
    c"kcore",
    c"keys",
    c"key-users",
    c"timer_list",
    c"sched_debug",
    c"sysrq-trigger",
    c"latency_stats",
    c"kallsyms",
    c"kmsg",
    c"config.gz",
];
/// /proc directories hidden behind an empty read-only tmpfs.
const MASKED_DIRS: [&CStr; 3] = [c"acpi", c"scsi", c"asound"];
/// /proc directories of kernel tunables, made read-only.
const READ_ONLY_DIRS: [&CStr; 4] = [c"sys", c"bus", c"fs", c"irq"];

/// Builds the root on `mountpoint` (the records directory, opened while the init could still
/// reach it) and enters it.
pub(super) fn build(plan: &LaunchPlan, mountpoint: OwnedFd) -> StepResult {
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
        .at(|| "make every mount private")?;
    let options = [(c"size", c"1m"), (c"mode", c"0755")];
    // Every later step works from this fd (and from the cwd), never through a host path.
    let (flags, what) = (NOSUID | NODEV, "the root tmpfs");
    let root = new_mount(c"tmpfs", &options, flags, &mountpoint, what)?;
    nix::unistd::fchdir(&root).at(|| "enter the new root")?;
    let mut allowed: Vec<&PathBuf> = plan.allowed_mounts.iter().collect();
    // Parents before children, so a nested path lands inside its parent's bind.
    allowed.sort();
    for host in allowed {
        mounts::bind_host_readonly(root.as_fd(), host)?;
    }
    let proc_dir = ensure(root.as_fd(), Path::new("proc"), true)?;
    new_mount(c"proc", &[], NOSUID | NODEV | NOEXEC, &proc_dir, "/proc")?;
    mask_proc(root.as_fd())?;
    build_dev(root.as_fd())?;
    build_writable(root.as_fd(), plan)?;
    write_etc(root.as_fd(), plan)?;
    enter()
}

/// A new filesystem attached onto `target`; returns the fd of its root.
fn new_mount(
    fstype: &CStr,
    options: &[(&CStr, &CStr)],
    attrs: u64,
    target: &OwnedFd,
    what: &str,
) -> StepResult<OwnedFd> {
    let fs = sys::new_fs(fstype, options, attrs).at(|| format!("create {what}"))?;
    attach(&fs, target, what)?;
    Ok(fs)
}

/// Hides what the job must not read or change in its /proc: runc's and Docker's list.
fn mask_proc(root: BorrowedFd<'_>) -> StepResult {
    let proc_dir = mounts::open_path(root, c"proc", true).at(|| "open /proc")?;
    let exists = |name: &CStr, dir: bool| match mounts::open_path(proc_dir.as_fd(), name, dir) {
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
        other => other
            .map(Some)
            .at(|| format!("open /proc/{}", name.to_string_lossy())),
    };
    let ro = RDONLY | NOSUID | NODEV | NOEXEC;
    let empty = c".empty";
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let made = nix::fcntl::openat(root, empty, flags, Mode::from_bits_truncate(0o444));
    drop(made.at(|| "create an empty file")?);
    for name in MASKED_FILES {
        if let Some(target) = exists(name, false)? {
            let what = format!("an empty file over /proc/{}", name.to_string_lossy());
            bind(Some(root), empty, false, ro, &target, &what)?;
        }
    }
    nix::unistd::unlinkat(root, empty, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .at(|| "remove the empty file")?;
    for name in MASKED_DIRS {
        if let Some(target) = exists(name, true)? {
            let what = format!("an empty tmpfs over /proc/{}", name.to_string_lossy());
            let options = [(c"size", c"4k"), (c"mode", c"0555")];
            new_mount(c"tmpfs", &options, ro, &target, &what)?;
        }
    }
    for name in READ_ONLY_DIRS {
        if let Some(target) = exists(name, true)? {
            let what = format!("/proc/{} read-only", name.to_string_lossy());
            bind(Some(proc_dir.as_fd()), name, true, ro, &target, &what)?;
        }
    }
    Ok(())
}

fn build_dev(root: BorrowedFd<'_>) -> StepResult {
    let options = [(c"size", c"64k"), (c"mode", c"0755")];
    let target = ensure(root, Path::new("dev"), true)?;
    let dev = new_mount(c"tmpfs", &options, NOSUID | NOEXEC, &target, "/dev")?;
    for name in DEVICES {
        let target = ensure(dev.as_fd(), Path::new(name), false)?;
        let what = format!("/dev/{name}");
        bind(None, &cstr(&what)?, false, NOSUID | NOEXEC, &target, &what)?;
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
    let options = [(c"ptmxmode", c"0666"), (c"mode", c"0620")];
    let target = ensure(dev.as_fd(), Path::new("pts"), true)?;
    new_mount(c"devpts", &options, NOSUID | NOEXEC, &target, "/dev/pts").map(drop)
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
    let options = [(c"size", size.as_c_str()), (c"mode", c"0755")];
    let what = format!("the {} MiB writable space", plan.disk_mb);
    let target = ensure(root, Path::new(STAGING), true)?;
    let staged = new_mount(c"tmpfs", &options, NOSUID | NODEV, &target, &what)?;
    let places: [(&CStr, &str, u32, u64); 3] = [
        (c"work", "work", 0o755, NOSUID | NODEV),
        (c"tmp", "tmp", 0o1777, NOSUID | NODEV),
        (c"shm", "dev/shm", 0o1777, NOSUID | NODEV | NOEXEC),
    ];
    for (sub, target, mode, attrs) in places {
        let m = Mode::from_bits_truncate(mode);
        let follow = nix::sys::stat::FchmodatFlags::FollowSymlink;
        nix::sys::stat::mkdirat(&staged, sub, m)
            // Explicitly: mkdirat applies the umask.
            .and_then(|()| nix::sys::stat::fchmodat(&staged, sub, m, follow))
            .at(|| format!("create /{target}"))?;
        let (what, point) = (format!("/{target}"), ensure(root, Path::new(target), true)?);
        bind(Some(staged.as_fd()), sub, false, attrs, &point, &what)?;
    }
    let (uid, gid) = (Some(Uid::from_raw(plan.uid)), Some(Gid::from_raw(plan.gid)));
    let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
    let owned = nix::unistd::fchownat(&staged, c"work", uid, gid, nofollow);
    owned.at(|| "give /work to the job user")?;
    drop(staged);
    // Relative to the cwd, the new root.
    nix::mount::umount2(STAGING, MntFlags::MNT_DETACH).at(|| "detach the staging mount")?;
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
    let hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    [
        ("passwd", passwd),
        ("group", group),
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
    ]
}

fn write_etc(root: BorrowedFd<'_>, plan: &LaunchPlan) -> StepResult {
    let etc = ensure(root, Path::new("etc"), true)?;
    for (name, content) in etc_files(plan.uid, plan.gid, &plan.hostname) {
        let step = || format!("write /etc/{name}");
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::openat(&etc, name, flags, Mode::from_bits_truncate(0o644)) {
            // An allowed host path already provides it.
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(StepError::new(step(), e)),
            Ok(fd) => std::fs::File::from(fd)
                .write_all(content.as_bytes())
                .at(step)?,
        }
    }
    Ok(())
}

/// pivot_root into the new root (the cwd), detach the host's, make the root read-only.
fn enter() -> StepResult {
    sys::pivot_root(c".", c".").at(|| "pivot_root")?;
    // The old root now sits on top of the new one at "."; detach it and everything below.
    nix::mount::umount2(".", MntFlags::MNT_DETACH).at(|| "detach the host root")?;
    nix::unistd::chdir("/").at(|| "chdir /")?;
    sys::mount_setattr(None, c"/", RDONLY | NOSUID | NODEV, false).at(|| "make the root read-only")
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
