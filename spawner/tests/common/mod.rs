//! What the spawner's two test support modules (`support`, for the cgroup tests, and
//! `layers`, for the hardening layers) share: workers (this test binary started again in a
//! chosen mode), gated child processes and temporary directories, cleaned up on drop, also
//! when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The env var that turns the test binary into a worker (see each file's `worker_process`).
pub const WORKER_ENV: &str = "SPAWNER_TEST_WORKER";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// This test binary, run as a worker in `mode`.
pub fn worker_command(mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([
        "--exact",
        "worker_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(WORKER_ENV, mode);
    cmd
}

/// A child process that waits for one line on stdin before it does the part that matters, so
/// the test can prepare something around it (a cgroup). Killed and reaped on drop.
pub struct Gated {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Gated {
    /// Runs `script` under `sh -c` after the gate line.
    pub fn shell(script: &str) -> Gated {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("read _gate || exit 99; {script}"));
        Gated::spawn(cmd)
    }

    /// Runs this test binary as a worker (its `worker_process`) in `mode`.
    pub fn worker(mode: &str) -> Gated {
        Gated::spawn(worker_command(mode))
    }

    /// `cmd` must read one line from stdin before doing anything that matters.
    pub fn spawn(mut cmd: Command) -> Gated {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn test child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Gated {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    pub fn release(&mut self) {
        let mut stdin = self.stdin.take().expect("released once");
        stdin.write_all(b"go\n").expect("release child");
    }

    /// The next stdout line starting with `prefix`, without the prefix.
    pub fn line(&mut self, prefix: &str) -> String {
        let out = self.stdout.as_mut().expect("stdout piped");
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "child ended before printing {prefix:?}");
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// The stdout lines before the line `marker` (which is consumed).
    pub fn until(&mut self, marker: &str) -> Vec<String> {
        let out = self.stdout.as_mut().expect("stdout piped");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).expect("read child stdout");
            assert!(
                n > 0,
                "child ended before printing {marker:?}:\n{}",
                lines.join("\n")
            );
            let line = line.trim_end().to_owned();
            if line == marker {
                return lines;
            }
            lines.push(line);
        }
    }

    /// Every remaining stdout line.
    pub fn rest(&mut self) -> Vec<String> {
        let out = self.stdout.as_mut().expect("stdout piped");
        out.lines().map_while(Result::ok).collect()
    }

    pub fn wait(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child still running after {patience:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the system temp dir, removed with its content on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "spawner-test-{tag}-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
