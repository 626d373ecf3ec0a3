//! Test support: a cgroup fixture with a unique base, guarded child processes, loop devices
//! and temporary directories, all cleaned up on drop (also when a test fails).

#![allow(dead_code)]

pub mod worker;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::settings::CgroupMode;
use joblet_spawner::cgroup::{CgroupConfig, Cgroups};

#[path = "../common/mod.rs"]
mod common;
pub use common::*;

pub const ROOT: &str = "/sys/fs/cgroup";

/// A job id no other test (or test run) uses.
pub fn new_job_id() -> JobId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let s = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        std::process::id(),
        unique() & 0xffff,
        nanos & 0xfff,
        (nanos >> 12) & 0xfff,
        u64::from(nanos) << 8 | u64::from(unique() & 0xff)
    );
    JobId::parse(&s).expect("generated job id")
}

/// V2 when `/sys/fs/cgroup` is itself a cgroup2 mount (the guest), V1 otherwise (this host).
pub fn host_mode() -> CgroupMode {
    let fs = nix::sys::statfs::statfs(ROOT).expect("statfs /sys/fs/cgroup");
    match fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        true => CgroupMode::V2,
        false => CgroupMode::V1,
    }
}

/// A value of a flat keyed cgroup file (`cpu.stat`, `memory.events`).
pub fn keyed(path: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).expect("read cgroup file");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}", path.display()))
}

/// Our own cgroups, with a unique base, removed with every job in it on drop.
pub struct Fixture {
    pub cg: Cgroups,
    pub cfg: CgroupConfig,
}

impl Fixture {
    /// `None` (with the reason printed) when the test cannot run here: not root.
    pub fn new() -> Option<Fixture> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: cgroup tests need root");
            return None;
        }
        let cfg = CgroupConfig {
            root: ROOT.into(),
            mode: host_mode(),
            base: format!("joblet-test-{}-{}", std::process::id(), unique()),
        };
        let cg = Cgroups::open(&cfg).expect("open cgroups");
        Some(Fixture { cg, cfg })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for job in self.cg.list().unwrap_or_default() {
            if let Ok(Some(j)) = self.cg.adopt(&job) {
                if let Err(e) = j.kill_all() {
                    eprintln!("cleanup: kill_all {job}: {e}");
                }
                if let Err(e) = j.remove() {
                    eprintln!("cleanup: remove {job}: {e}");
                }
            }
        }
        if let Err(e) = self.cg.remove_base() {
            eprintln!("cleanup: remove_base {}: {e}", self.cfg.base);
        }
    }
}

pub fn killed_by(status: ExitStatus) -> Option<i32> {
    status.signal()
}

/// A loop device over an image file, detached on drop.
pub struct LoopDevice {
    pub dev: PathBuf,
    pub major: u32,
    pub minor: u32,
}

impl LoopDevice {
    pub fn attach(image: &Path, partitions: bool) -> LoopDevice {
        let mut cmd = Command::new("losetup");
        cmd.args(["--find", "--show"]);
        if partitions {
            cmd.arg("--partscan");
        }
        let out = cmd.arg(image).output().expect("run losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let (major, minor) = block_dev_numbers(&dev);
        LoopDevice { dev, major, minor }
    }

    /// The device node of partition `n`. Kernels without the MBR parser (this CI host's)
    /// never scan it themselves; `partx` then reads the table and adds it with BLKPG.
    pub fn partition(&self, n: u32) -> PathBuf {
        let p = PathBuf::from(format!("{}p{n}", self.dev.display()));
        if !eventually(Duration::from_secs(1), || p.exists()) {
            let out = Command::new("partx")
                .args(["--add", "--nr", &n.to_string()])
                .arg(&self.dev)
                .output()
                .expect("run partx");
            assert!(
                out.status.success(),
                "partx: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            eventually(Duration::from_secs(5), || p.exists()),
            "{} never appeared",
            p.display()
        );
        p
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

pub fn block_dev_numbers(dev: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(dev).expect("stat device");
    assert!(
        meta.file_type().is_block_device(),
        "{} is a block device",
        dev.display()
    );
    let rdev = meta.rdev();
    (
        u32::try_from(nix::sys::stat::major(rdev)).expect("major"),
        u32::try_from(nix::sys::stat::minor(rdev)).expect("minor"),
    )
}

/// A sparse image file of `mib` MiB, optionally with an MBR holding one Linux partition
/// from sector 2048 to the end.
pub fn image(dir: &Path, name: &str, mib: u64, with_partition: bool) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("create image");
    f.set_len(mib << 20).expect("size image");
    if with_partition {
        let sectors = u32::try_from((mib << 20) / 512).expect("small image");
        let mut mbr = [0u8; 512];
        let entry = &mut mbr[446..462];
        entry[4] = 0x83;
        entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
        entry[12..16].copy_from_slice(&(sectors - 2048).to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        use std::os::unix::fs::FileExt;
        f.write_all_at(&mbr, 0).expect("write MBR");
    }
    path
}

pub fn mkfs_ext4(target: &Path) {
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(target)
        .output()
        .expect("run mkfs.ext4");
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits up to `timeout` for `events` on `fd`; true when they came.
pub fn poll_for(fd: std::os::fd::BorrowedFd<'_>, events: libc::c_short, timeout: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let flags = PollFlags::from_bits_truncate(events);
    let mut fds = [PollFd::new(fd, flags)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let n = poll(&mut fds, PollTimeout::from(ms)).expect("poll");
    n > 0 && fds[0].revents().is_some_and(|r| r.intersects(flags))
}

/// `Cpus_allowed_list` of a process.
pub fn cpus_allowed(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list line")
        .trim()
        .to_owned()
}

/// Polls `f` until it is true or `patience` passes.
pub fn eventually(patience: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
