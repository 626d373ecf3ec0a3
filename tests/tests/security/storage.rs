//! Devices and the job's writable space: `mknod` of a disk, host device nodes, and filling
//! `/work`, `/tmp` and `/dev/shm`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use joblet_tests::cgroupfs::{self, Mode};
use joblet_tests::hostile::{
    assert_lines, free_bytes, line_value, mem_available, python_job, sh_job,
};
use joblet_tests::tail::LogTail;
use joblet_tests::{System, require_job_python, require_root};

use super::common::{Daemons, WAIT, assert_refused, probe};

/// A real block device of this machine: the one under `/`, else the first loop device.
fn host_disk() -> (u64, u64) {
    let dev = std::fs::metadata("/").expect("stat /").dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    if major != 0 && Path::new(&format!("/sys/dev/block/{major}:{minor}")).exists() {
        (major, minor)
    } else {
        (7, 0)
    }
}

/// Block and character device files found under `dir`.
fn device_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_block_device() || t.is_char_device() {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

/// Case: `mknod` the host's disk in every writable place and read it (refused with EPERM
/// for want of CAP_MKNOD, or EACCES where Landlock, which is asked first, refuses it).
#[test]
fn mknod_of_a_disk_is_refused() {
    require_root!();
    let (major, minor) = host_disk();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let script = format!(
        "for d in /tmp /work /dev/shm; do
           mknod $d/disk b {major} {minor} 2>&1 | grep -qE 'Operation not permitted|Permission denied' && echo \"MKNOD $d=DENIED\" || echo \"MKNOD $d=OTHER\"
           head -c 4096 $d/disk >/dev/null 2>&1 && echo \"READ $d=READ\" || echo \"READ $d=DENIED\"
         done"
    );
    let out = probe(&sys, &sh_job(&script));
    let mut want = Vec::new();
    for d in ["/tmp", "/work", "/dev/shm"] {
        want.push(format!("MKNOD {d}=DENIED"));
        want.push(format!("READ {d}=DENIED"));
    }
    assert_lines(&out, &want.iter().map(String::as_str).collect::<Vec<_>>());
    let nodes = device_files(sys.dir.path());
    assert!(
        nodes.is_empty(),
        "device nodes appeared on the host: {nodes:?}"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}

/// The only entries of the job's `/dev`.
const JOB_DEV: &[&str] = &[
    "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
    "urandom", "zero",
];

/// The v1 device cgroup allow-list (null, zero, full, random, urandom, tty, ptmx, ptys).
const V1_DEVICES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Case: host devices (`/dev/mem`, `/dev/kmsg`, loop devices, disks) are absent, cannot be
/// made, and on v1 the job's device cgroup allows only the minimal set.
#[test]
fn host_devices_are_absent_and_cannot_be_made() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = r#"
import stat
for d in ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/loop0",
          "/dev/loop-control", "/dev/vda", "/dev/sda", "/dev/console", "/dev/fuse",
          "/dev/net/tun", "/dev/userfaultfd"]:
    print("DEV %s=%s" % (d, "PRESENT" if os.path.lexists(d) else "ABSENT"))
for name, kind, major, minor in [("kmsg", stat.S_IFCHR, 1, 11), ("mem", stat.S_IFCHR, 1, 1),
                                 ("loop0", stat.S_IFBLK, 7, 0)]:
    attempt("MKNOD " + name, lambda: os.mknod("/dev/shm/" + name, 0o600 | kind, os.makedev(major, minor)))
print("DEV_ENTRIES=" + ",".join(sorted(os.listdir("/dev"))))
print("READY", flush=True)
import time
time.sleep(600)
"#;
    let job = sys.start_job(&[], &python_job(body));
    let mut tail = LogTail::start(&sys, &job);
    let out = tail.wait_for("READY", WAIT);
    for d in [
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
        "/dev/kmsg",
        "/dev/loop0",
        "/dev/loop-control",
        "/dev/vda",
        "/dev/sda",
        "/dev/console",
        "/dev/fuse",
        "/dev/net/tun",
        "/dev/userfaultfd",
    ] {
        assert_lines(&out, &[&format!("DEV {d}=ABSENT")]);
    }
    for name in ["kmsg", "mem", "loop0"] {
        // EPERM from the missing CAP_MKNOD, or EACCES from Landlock, which checks first.
        assert_refused(&out, &format!("MKNOD {name}"), &["EPERM", "EACCES"]);
    }
    let entries = line_value(&out, "DEV_ENTRIES").unwrap_or_default();
    let extra: Vec<&str> = entries
        .split(',')
        .filter(|e| !JOB_DEV.contains(e))
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected entries in the job's /dev: {extra:?}"
    );
    match cgroupfs::mode() {
        Mode::V1 => {
            let list = cgroupfs::read(&sys, &job, "devices.list").expect("devices.list");
            let mut rules: Vec<&str> = list.lines().collect();
            rules.sort_unstable();
            let mut want = V1_DEVICES.to_vec();
            want.sort_unstable();
            assert_eq!(
                rules, want,
                "the job's device cgroup allows more than the minimal set"
            );
        }
        Mode::V2 => eprintln!(
            "NOTE: on cgroup v2 the device program is not readable without bpftool; \
             the job-side mknod and open checks above stand for it"
        ),
    }
    sys.rnx(&["job", "stop", &job.id]).expect_ok("stop");
    sys.wait_done(&job, WAIT);
    drop(tail);
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Host space before a filling attack: the filesystems a leak could land on, and memory
/// (the job's writable space is a tmpfs).
struct Space {
    places: Vec<(String, u64)>,
    memory: u64,
}

impl Space {
    fn snap(sys: &System) -> Space {
        let places = [sys.dir.path(), Path::new("/tmp"), Path::new("/dev/shm")]
            .iter()
            .map(|p| (p.display().to_string(), free_bytes(p)))
            .collect();
        Space {
            places,
            memory: mem_available(),
        }
    }

    /// The job tried to write gigabytes; the host lost at most a little (other tests run
    /// in parallel, hence the margins).
    fn assert_kept(&self) {
        for (p, before) in &self.places {
            let now = free_bytes(Path::new(p));
            assert!(
                now + (64 << 20) >= *before,
                "{p} lost {} MiB of free space",
                (before - now) >> 20
            );
        }
        let now = mem_available();
        assert!(
            now + (512 << 20) >= self.memory,
            "the host lost {} MiB of memory",
            (self.memory - now) >> 20
        );
    }
}

/// `dd` of up to `mib` MiB of zeros into `file`; prints `FULL <file>=ENOSPC` when the
/// filesystem ran out of space.
fn dd_fill(file: &str, mib: u32) -> String {
    format!(
        "dd if=/dev/zero of={file} bs=64k count={} 2>&1 | grep -q 'No space left on device' \
         && echo 'FULL {file}=ENOSPC' || echo 'FULL {file}=NOT_FULL'\n",
        mib * 16
    )
}

/// Case: fill `/work`: the job gets ENOSPC at its 1 MiB default, the host loses nothing.
#[test]
fn filling_the_work_directory_gives_enospc_to_the_job_only() {
    require_root!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let space = Space::snap(&sys);
    let script = format!(
        "{}echo WORK_KIB=$(du -sk /work | cut -f1)\necho DF=$(df -k /work | tail -1)",
        dd_fill("/work/fill", 1024)
    );
    let out = probe(&sys, &sh_job(&script));
    assert_lines(&out, &["FULL /work/fill=ENOSPC"]);
    let kib: u64 = line_value(&out, "WORK_KIB")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        (512..=1024).contains(&kib),
        "/work held {kib} KiB, the documented default is 1 MiB:\n{out}"
    );
    space.assert_kept();
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: the quota cannot be escaped through `/tmp` or `/dev/shm` (the Go original's hole):
/// all three share one space of the job's size.
#[test]
fn tmp_and_dev_shm_share_the_jobs_quota() {
    require_root!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let space = Space::snap(&sys);
    let script = format!(
        "{}{}{}echo TOTAL_KIB=$(du -skc /tmp/fill /dev/shm/fill /work/fill | tail -1 | cut -f1)",
        dd_fill("/tmp/fill", 512),
        dd_fill("/dev/shm/fill", 512),
        dd_fill("/work/fill", 512)
    );
    let out = probe(&sys, &sh_job(&script));
    assert_lines(
        &out,
        &[
            "FULL /tmp/fill=ENOSPC",
            "FULL /dev/shm/fill=ENOSPC",
            "FULL /work/fill=ENOSPC",
        ],
    );
    let total: u64 = line_value(&out, "TOTAL_KIB")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        total <= 1024,
        "/tmp, /dev/shm and /work together held {total} KiB, more than the 1 MiB quota:\n{out}"
    );
    space.assert_kept();
    daemons.assert_intact(&sys);
    sys.stop();
}
