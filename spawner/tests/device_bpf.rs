//! Root tests of the cgroup v2 device program against the real kernel. They need a cgroup2
//! hierarchy: in the v2 guest that is `/sys/fs/cgroup`; on this project's hybrid v1 host it is
//! the controller-less `/sys/fs/cgroup/unified`, where cgroup BPF works as well. Without any
//! cgroup2 mount the tests print a skip reason.
//!
//! A worker makes device nodes in a private tmpfs (its own mount namespace), opens them once as
//! a control, is moved into a fresh cgroup carrying the program, and opens them again and makes
//! new ones. Allowed devices may still fail to open for their own reasons (no such pty, no
//! controlling terminal); only the program answers EPERM.

mod layers;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use joblet_spawner::cgroup::device_bpf::{self, DeviceFilterError};
use layers::*;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

/// (name, block?, major, minor, allowed by the program)
const NODES: &[(&str, bool, u64, u64, bool)] = &[
    ("null", false, 1, 3, true),
    ("zero", false, 1, 5, true),
    ("full", false, 1, 7, true),
    ("random", false, 1, 8, true),
    ("urandom", false, 1, 9, true),
    ("tty", false, 5, 0, true),
    ("ptmx", false, 5, 2, true),
    ("pts0", false, 136, 0, true),
    ("pts77", false, 136, 77, true),
    ("kmsg", false, 1, 11, false),
    ("console", false, 5, 1, false),
    ("tty1", false, 4, 1, false),
    ("pty-major-137", false, 137, 0, false),
    ("loop0", true, 7, 0, false),
    ("sda", true, 8, 0, false),
    ("block-1-3", true, 1, 3, false),
];

#[test]
#[ignore = "helper process started by the other tests"]
fn worker_process() {
    if let Ok(mode) = std::env::var(WORKER_ENV) {
        match mode.as_str() {
            "devices" => devices_worker(),
            other => panic!("unknown worker mode {other}"),
        }
    }
}

#[test]
fn a_job_in_the_cgroup_reaches_exactly_the_allowed_devices() {
    if !is_root() {
        return;
    }
    let Some(parent) = own_cgroup2_dir() else {
        return;
    };
    let cgroup = CgroupDir::create(&parent);
    let dir = nix::fcntl::open(
        &cgroup.0,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .expect("open the cgroup");
    device_bpf::attach_device_filter(dir.as_fd()).expect("attach the device program");
    drop(dir);

    let nodes = TempDir::new("devices");
    let mut cmd = worker_command("devices");
    cmd.env("NODES_DIR", nodes.path());
    let mut worker = Gated::spawn(cmd);
    let mut lines = worker.until("READY");
    std::fs::write(cgroup.0.join("cgroup.procs"), worker.pid().to_string())
        .expect("move the worker into the cgroup");
    worker.release();
    lines.extend(worker.rest());
    let status = worker.wait(Duration::from_secs(10));
    assert!(
        status.success(),
        "worker failed: {status}\n{}",
        lines.join("\n")
    );
    let results: BTreeMap<&str, &str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| l.rsplit_once(' '))
        .collect();

    let mut failures = Vec::new();
    let mut check = |key: String, ok: &dyn Fn(&str) -> bool, want: &str| {
        let got = results.get(key.as_str()).copied().unwrap_or("missing");
        eprintln!("{key:<28} {got}");
        if !ok(got) {
            failures.push(format!("{key}: {got}, want {want}"));
        }
    };
    for &(name, _, _, _, allowed) in NODES {
        let control = format!("control-open {name}");
        check(
            control,
            &|g| g != "EPERM" && g != "missing",
            "not EPERM before the cgroup",
        );
        if allowed {
            check(
                format!("open {name}"),
                &|g| g != "EPERM" && g != "missing",
                "not EPERM",
            );
            check(format!("mknod {name}"), &|g| g == "ok", "ok");
        } else {
            check(format!("open {name}"), &|g| g == "EPERM", "EPERM");
            check(format!("mknod {name}"), &|g| g == "EPERM", "EPERM");
        }
    }
    for key in ["write host /dev/null", "write zero"] {
        check(key.to_owned(), &|g| g == "ok", "ok");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn attaching_to_a_directory_that_is_not_a_cgroup_fails_with_a_clear_error() {
    if !is_root() {
        return;
    }
    let plain = TempDir::new("not-a-cgroup");
    let fd = nix::fcntl::open(
        plain.path(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .expect("open temp dir");
    match device_bpf::attach_device_filter(fd.as_fd()) {
        Err(
            e @ DeviceFilterError::Attach {
                errno: Errno::EBADF,
            },
        ) => {
            let msg = e.to_string();
            assert!(msg.contains("cgroup v2"), "{msg}");
            eprintln!("refused as expected: {msg}");
        }
        other => panic!("expected Attach EBADF, got {other:?}"),
    }
}

// ── cgroup plumbing ─────────────────────────────────────────────────────────────────────────

/// Our own cgroup in the cgroup2 hierarchy, or `None` (with the reason printed).
fn own_cgroup2_dir() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mount = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(PathBuf::from))?
    });
    let Some(mount) = mount else {
        eprintln!(
            "SKIPPED: no cgroup2 hierarchy is mounted (cgroup v1 only): nothing to attach to"
        );
        return None;
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line in /proc/self/cgroup");
    let dir = mount.join(path.trim_start_matches('/'));
    eprintln!("cgroup2 parent: {}", dir.display());
    Some(dir)
}

/// A cgroup of our own, emptied (SIGKILL) and removed on drop.
struct CgroupDir(PathBuf);

impl CgroupDir {
    fn create(parent: &Path) -> CgroupDir {
        let p = parent.join(format!(
            "hardening-test-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir(&p).expect("create cgroup");
        CgroupDir(p)
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.0.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        eventually(Duration::from_secs(5), || {
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::fs::remove_dir(&self.0).is_ok()
        });
        if self.0.exists() {
            eprintln!("cleanup: could not remove {}", self.0.display());
        }
    }
}

// ── The worker ──────────────────────────────────────────────────────────────────────────────

/// Private tmpfs with the nodes; control opens; wait to be moved; opens and mknods again.
fn devices_worker() {
    let dir = PathBuf::from(std::env::var("NODES_DIR").expect("NODES_DIR"));
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount ns");
    let rec_private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, rec_private, None::<&str>)
        .expect("make mounts private");
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .expect("mount a tmpfs for device nodes");
    for &(name, block, major, minor, _) in NODES {
        mknod(&dir.join(name), block, major, minor).expect("mknod outside the cgroup");
        println!("RESULT control-open {name} {}", open(&dir.join(name)));
    }
    println!("READY");
    let mut gate = String::new();
    std::io::stdin().read_line(&mut gate).expect("gate");

    for &(name, block, major, minor, _) in NODES {
        println!("RESULT open {name} {}", open(&dir.join(name)));
        let made = mknod(&dir.join(format!("new-{name}")), block, major, minor);
        println!("RESULT mknod {name} {}", outcome(made));
    }
    let write = |p: &Path| outcome(std::fs::write(p, b"x"));
    println!(
        "RESULT write host /dev/null {}",
        write(Path::new("/dev/null"))
    );
    println!("RESULT write zero {}", write(&dir.join("zero")));
}

fn mknod(path: &Path, block: bool, major: u64, minor: u64) -> std::io::Result<()> {
    let kind = if block {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(0o600), dev)
        .map_err(std::io::Error::from)
}

fn open(path: &Path) -> String {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    outcome(nix::fcntl::open(path, flags, Mode::empty()).map_err(std::io::Error::from))
}
