//! Following a running job's output (`rnx job log`) to act on the host at a point the job
//! announces, e.g. reading its cgroup files after its attack and before it ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::{Job, System, bin};

pub struct LogTail {
    child: Child,
    lines: Receiver<String>,
    seen: String,
}

impl LogTail {
    /// Starts `rnx job log` on `job`; it follows the output until the job ends.
    pub fn start(sys: &System, job: &Job) -> LogTail {
        let mut child = Command::new(bin("rnx"))
            .arg("--config")
            .arg(&sys.admin)
            .args(["job", "log", &job.id])
            .env_remove("RNX_CONFIG")
            .env("HOME", sys.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rnx job log");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LogTail {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits until a line equal to `marker` arrives; returns the output so far. Panics
    /// with that output if the log ends or `limit` passes first.
    pub fn wait_for(&mut self, marker: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.trim() == marker;
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if found {
                        return self.seen.clone();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {marker:?} after {limit:?}; output so far:\n{}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the log ended before {marker:?}; output:\n{}", self.seen)
                }
            }
        }
    }

    /// Waits (up to `limit`) for the log to end with the job; returns the whole output.
    pub fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => return std::mem::take(&mut self.seen),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the log did not end within {limit:?}:\n{}", self.seen)
                }
            }
        }
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
