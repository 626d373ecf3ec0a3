//! The job's root filesystem. Its read-only part, the **base**, is built once, by the spawner at
//! its start, in a mount namespace of its own ([`build_base`]) that the shim factory and the
//! shims inherit. Every job's mount namespace starts as a copy of that one, so the job init
//! finds its own copy of the base ready, adds the job's own mounts to it ([`build`]) and pivots
//! into it: about twenty binds and two hundred syscalls fewer per job than building the whole
//! tree each time.
//!
//! | path | what | flags | made |
//! |---|---|---|---|
//! | `/` | small tmpfs | read-only, nosuid, nodev | base |
//! | allowed host directories | recursive binds | read-only, nosuid, nodev | base |
//! | allowed host files | binds | read-only, nosuid, nodev | per job (a file the host replaces, like `resolv.conf`, reaches the next job) |
//! | `/dev` | tmpfs with binds of null, zero, full, random, urandom, tty | read-only, nosuid, noexec | base |
//! | `/dev/pts` | devpts | nosuid, noexec | per job |
//! | `/proc` | proc of the job's pid namespace, sensitive paths masked (see [`mask_proc`]) | nosuid, nodev, noexec | per job |
//! | `/work`, `/tmp`, `/dev/shm` | three directories of **one** tmpfs of the job's disk size | nosuid, nodev (+noexec for shm) | per job |
//! | `/etc/{passwd,group,hostname,hosts}` | generated unless an allowed path provides them | read-only | per job |
//!
//! `/sys` is absent. Sharing one tmpfs between every writable place means the disk limit
//! cannot be escaped by writing somewhere else, and filling it gives ENOSPC to this job only.
//! That tmpfs is memory, charged to the job's memory cgroup: it has no block device, so io
//! limits apply to the allowed host paths only. The base's tmpfs is shared by every job, and
//! read-only in each (locked so in a job's user namespace): no job can leave anything there.
//!
//! Everything per job works as root of the job's user namespace when it has one: the mounts
//! are new instances (tmpfs, proc, devpts) or binds, which such a root may make.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{Gid, Uid};

use super::mounts::{self, NODEV, NOEXEC, NOSUID, RDONLY, attach, bind, cstr, ensure};
use joblet_ipc_proto::settings::SpawnerSettings;

use super::{At, LaunchPlan, StepResult};
use crate::sys;

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// /proc files hidden behind a bind of /dev/null that no one may open (nodev), as runc does.
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

/// Builds the base (see the module documentation) from the allowed host paths, attached to
/// `mountpoint` (an empty directory of root's) in a new mount namespace of the calling process,
/// the spawner, and makes it the working directory, which the factory and every shim inherit
/// and each job init's new mount namespace maps to its own copy. Returns the allowed host paths
/// that are files: each job binds those itself.
pub fn build_base(s: &SpawnerSettings, mountpoint: &Path) -> StepResult<Vec<PathBuf>> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).at(|| "unshare the spawner's mount namespace")?;
    // The host's later mounts still reach us and the jobs; ours never reach the host.
    let slave = MsFlags::MS_REC | MsFlags::MS_SLAVE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, slave, None::<&str>)
        .at(|| "make every mount a slave")?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let target = nix::fcntl::open(mountpoint, flags, Mode::empty())
        .at(|| format!("open {}", mountpoint.display()))?;
    let options = [(c"size", c"1m"), (c"mode", c"0755")];
    let root = new_mount(c"tmpfs", &options, NOSUID | NODEV, &target, "the base")?;
    // The spawner's 077 would keep a job in a user namespace out of the base's directories.
    let umask = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    let mut files = Vec::new();
    // Parents before children, so a nested path lands inside its parent's bind.
    for host in BTreeSet::from_iter(&s.allowed_mounts) {
        files.extend(mounts::bind_host(root.as_fd(), host, true)?.then(|| host.clone()));
    }
    build_dev(root.as_fd())?;
    let dirs = ["proc", "work", "tmp", "dev/shm", "dev/pts"].map(|d| (PathBuf::from(d), true));
    let etc = etc_files(0, 0, "").map(|(name, _)| (Path::new("etc").join(name), false));
    for (point, dir) in dirs.into_iter().chain(etc) {
        ensure(root.as_fd(), &point, dir)?;
    }
    // Recursively: device files stay writable on a read-only mount.
    sys::mount_setattr(Some(root.as_fd()), c"", RDONLY, true).at(|| "make the base read-only")?;
    nix::sys::stat::umask(umask);
    prune(s, &files);
    nix::unistd::fchdir(&root).at(|| "enter the base")?;
    Ok(files)
}

/// Detaches from our namespace the host mounts that nothing of ours reaches by name (the
/// spawner's directories and sockets, cgroups, /proc, /dev, the allowed host files), nor where
/// it leads, lies in or under. Ours are copies, which a host `umount` reaches only where the host's mounts are
/// shared: elsewhere they would keep a host filesystem busy for the spawner's life. And every
/// job copies them.
fn prune(s: &SpawnerSettings, files: &[PathBuf]) {
    // The persistd socket is reached by name: the mounts it lies in are kept.
    let mut keep = vec![Path::new("/proc"), Path::new("/dev"), &*s.output_socket];
    keep.extend([s.cgroup_root.as_path(), s.state_dir.as_path()]);
    keep.extend(files.iter().map(PathBuf::as_path));
    // And where each leads: a symlink (`/var/run`, systemd's resolv.conf) may cross mounts.
    let mut all: Vec<PathBuf> = keep.iter().map(|k| k.to_path_buf()).collect();
    all.extend(keep.iter().filter_map(|k| k.canonicalize().ok()));
    let mounts = crate::cgroup::mountinfo::read_mounts().unwrap_or_default();
    // A mount comes after the one it sits on: the end first.
    for m in mounts.iter().rev() {
        let p = m.mount_point.as_path();
        if !all.iter().any(|k| k.starts_with(p) || p.starts_with(k))
            && let Err(e) = nix::mount::umount2(p, MntFlags::MNT_DETACH)
        {
            tracing::warn!(mount = %p.display(), error = %e, "cannot detach an unused host mount");
        }
    }
}

/// Adds the job's own mounts to its copy of the base, its working directory, and enters it.
/// `plan.host_files`: the allowed host paths that are files ([`build_base`]).
pub(super) fn build(plan: &LaunchPlan) -> StepResult {
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
        .at(|| "make every mount private")?;
    // Our own clone of it, on top of it: pivot_root refuses a mount the copy into a job's user
    // namespace locked, and open_tree unlocks its clone (not the flags within: read-only stays).
    let base = mounts::open_path(nix::fcntl::AT_FDCWD, c".", true).at(|| "open the base")?;
    let root = sys::open_tree_clone(None, c".", true).at(|| "clone the base")?;
    attach(&root, &base, "the job's copy of the base")?;
    // Every later step works from this fd (and from the cwd), never through a host path.
    nix::unistd::fchdir(&root).at(|| "enter the job's copy of the base")?;
    for host in &plan.host_files {
        mounts::bind_host(root.as_fd(), host, false)?;
    }
    build_writable(root.as_fd(), plan)?;
    let proc_dir = ensure(root.as_fd(), Path::new("proc"), true)?;
    new_mount(c"proc", &[], NOSUID | NODEV | NOEXEC, &proc_dir, "/proc")?;
    mask_proc(root.as_fd())?;
    let options = [(c"ptmxmode", c"0666"), (c"mode", c"0620")];
    let target = ensure(root.as_fd(), Path::new("dev/pts"), true)?;
    new_mount(c"devpts", &options, NOSUID | NOEXEC, &target, "/dev/pts")?;
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
    for name in MASKED_FILES {
        if let Some(target) = exists(name, false)? {
            let what = format!("/dev/null over /proc/{}", name.to_string_lossy());
            bind(Some(root), c"dev/null", false, ro, &target, &what)?;
        }
    }
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

/// The base's /dev: a tmpfs with binds of the host's harmless devices and the usual links.
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
    Ok(())
}

/// One tmpfs of the job's disk size, shown at /work (the job's), /tmp and /dev/shm (1777); its
/// root, never shown, also holds the generated /etc files ([`write_etc`]).
///
/// Kernels before 6.15 refuse `open_tree(OPEN_TREE_CLONE)` on a mount that is not attached
/// to a namespace (EINVAL on Debian 12's 6.1), so the new tmpfs is attached at the staging
/// point first, the views are cloned from there, and the staging mount is detached again.
fn build_writable(root: BorrowedFd<'_>, plan: &LaunchPlan) -> StepResult {
    let size = cstr(&format!("{}m", plan.disk_mb))?;
    let options = [(c"size", size.as_c_str()), (c"mode", c"0755")];
    let what = format!("the {} MiB writable space", plan.disk_mb);
    // Staged at the base's /proc, still empty (proc is mounted there next).
    let target = mounts::open_path(root, c"proc", true).at(|| "open the staging point")?;
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
    write_etc(staged.as_fd(), root, plan)?;
    drop(staged);
    // Relative to the cwd, the new root.
    nix::mount::umount2("proc", MntFlags::MNT_DETACH).at(|| "detach the staging mount")
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

/// Writes the generated /etc files in `staged` and binds each read-only over its empty file in
/// the base, unless an allowed host path provides it: then the file there is not the base's.
fn write_etc(staged: BorrowedFd<'_>, root: BorrowedFd<'_>, plan: &LaunchPlan) -> StepResult {
    let base_dev = fstat(root).at(|| "inspect the base")?.st_dev;
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    let (mode, ro) = (Mode::from_bits_truncate(0o644), RDONLY | NOSUID | NODEV);
    for (name, content) in etc_files(plan.uid, plan.gid, &plan.hostname) {
        let (step, path) = (|| format!("write /etc/{name}"), format!("etc/{name}"));
        // The base's own directory: no symlink on the way.
        let target = mounts::open_path(root, &cstr(&path)?, false).at(step)?;
        if fstat(&target).at(step)?.st_dev == base_dev {
            let name = cstr(name)?;
            let file = nix::fcntl::openat(staged, name.as_c_str(), flags, mode).at(step)?;
            std::fs::File::from(file)
                .write_all(content.as_bytes())
                .at(step)?;
            bind(Some(staged), &name, false, ro, &target, &step())?;
        }
    }
    Ok(())
}

/// pivot_root into the new root (the cwd) and detach the host's. The root is the base's,
/// read-only already.
fn enter() -> StepResult {
    nix::unistd::pivot_root(c".", c".").at(|| "pivot_root")?;
    // The old root now sits on top of the new one at "."; detach it and everything below.
    nix::mount::umount2(".", MntFlags::MNT_DETACH).at(|| "detach the host root")?;
    nix::unistd::chdir("/").at(|| "chdir /")
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
