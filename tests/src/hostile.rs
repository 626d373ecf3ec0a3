//! Tools for hostile jobs: the scripts they run, how their verdicts are read, and the host
//! state a test snapshots before an attack and compares after it.
//!
//! A hostile script prints one `TAG=VERDICT` line per attempt (`KEYCTL=EPERM`,
//! `SHADOW=DENIED`, …) so that a test asserts the exact verdict, errno included, and a
//! script that dies half-way shows up as a missing line rather than as a pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The Python the jobs run: Debian's, reachable through the default allowed mounts
/// (`/usr/bin`, `/usr/lib`), unlike a pyenv or venv interpreter of the test runner.
pub const JOB_PYTHON: &str = "/usr/bin/python3";

/// True when [`JOB_PYTHON`] exists on the host; the caller prints a skip reason otherwise.
pub fn python_in_jobs() -> bool {
    Path::new(JOB_PYTHON).exists()
}

/// Skips the calling test with a printed reason when jobs have no Python to make raw
/// system calls with.
#[macro_export]
macro_rules! require_job_python {
    () => {
        if !$crate::hostile::python_in_jobs() {
            eprintln!(
                "SKIPPED: {} is absent on this host, so a job cannot make raw system calls",
                $crate::hostile::JOB_PYTHON
            );
            return;
        }
    };
}

/// Python run inside a job before a case's own lines: `sc(TAG, NR, *args)` makes the raw
/// system call `NR` and prints `TAG=OK` or `TAG=<errno name>`; `attempt(TAG, fn)` does the
/// same for a Python call that raises `OSError`.
const PY_PRELUDE: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def _arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a
def verdict(tag, ok, err=0):
    print(tag + "=" + ("OK" if ok else errno.errorcode.get(err, str(err))), flush=True)
def sc(tag, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    verdict(tag, r >= 0, ctypes.get_errno())
    return r
def attempt(tag, fn):
    try:
        r = fn()
    except OSError as e:
        verdict(tag, False, e.errno)
        return None
    verdict(tag, True)
    return r
"#;

/// The argv of a job running `body` under Python with the prelude's helpers.
pub fn python_job(body: &str) -> Vec<String> {
    vec![
        JOB_PYTHON.to_owned(),
        "-c".to_owned(),
        format!("{PY_PRELUDE}\n{body}"),
    ]
}

/// The argv of a job running `script` with `sh -c`.
pub fn sh_job(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

/// Panics, showing the whole output, unless every `want` line appears exactly.
pub fn assert_lines(out: &str, want: &[&str]) {
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let missing: Vec<&&str> = want.iter().filter(|w| !lines.contains(w)).collect();
    assert!(
        missing.is_empty(),
        "the job did not report {missing:?}; its whole output:\n{out}"
    );
}

/// The value of the first `KEY=value` line of `out`.
pub fn line_value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
}

/// A string no other test or run uses: for file names, mount sources, marker arguments.
pub fn nonce() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}x{n}x{t}", std::process::id())
}

/// A duration for `sleep` (`3123.456789…`) that no other process's command line holds:
/// a job's processes can then be found on the host by it.
pub fn sleep_marker() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    let pid = std::process::id();
    format!("{}.{micros:06}{n}{pid}", 3000 + pid % 500)
}

/// A host file as it was: content and modification time (`None` if absent).
/// Opening a file for writing does not change its time, but writing or `touch` does.
#[derive(Debug)]
pub struct HostFile {
    pub path: PathBuf,
    before: Option<(Vec<u8>, Option<SystemTime>)>,
}

impl HostFile {
    pub fn snap(path: impl Into<PathBuf>) -> HostFile {
        let path = path.into();
        let before = read_state(&path);
        HostFile { path, before }
    }

    pub fn existed(&self) -> bool {
        self.before.is_some()
    }

    /// Panics if the file changed, appeared or vanished since the snapshot.
    pub fn assert_unchanged(&self) {
        let now = read_state(&self.path);
        assert!(
            now == self.before,
            "host file {} changed (existed before: {}, exists now: {})",
            self.path.display(),
            self.before.is_some(),
            now.is_some()
        );
    }
}

fn read_state(path: &Path) -> Option<(Vec<u8>, Option<SystemTime>)> {
    let bytes = std::fs::read(path).ok()?;
    // Files of /proc have no meaningful modification time: their content is compared.
    let mtime = if path.starts_with("/proc") {
        None
    } else {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    };
    Some((bytes, mtime))
}

/// Lines of the host's mount table (the test runs in the host's mount namespace) that
/// contain `needle`.
pub fn host_mounts_containing(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Host processes whose command line contains `needle`.
pub fn host_procs_with(needle: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A host process that a job must neither see nor signal: `sleep` with a unique duration
/// (its marker), run as `uid` (the job user's number, so only namespaces protect it).
pub struct Sentinel {
    child: Child,
    pub marker: String,
}

impl Sentinel {
    pub fn spawn(uid: u32) -> Sentinel {
        let marker = sleep_marker();
        let child = Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
                "sleep",
                &marker,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the sentinel process");
        let s = Sentinel { child, marker };
        // setpriv execs sleep: wait until the pid shows the marker.
        let start = Instant::now();
        while !s.cmdline().contains(&s.marker) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sentinel never ran"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn cmdline(&self) -> String {
        std::fs::read(format!("/proc/{}/cmdline", self.pid()))
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default()
    }

    /// Alive and still the same program (not a zombie, not reaped and reused).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && self.cmdline().contains(&self.marker)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Free bytes of the filesystem holding `path`, as an unprivileged user would see them.
pub fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() * s.fragment_size()
}

/// `MemAvailable` of the host, bytes.
pub fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("MemAvailable in /proc/meminfo")
}
