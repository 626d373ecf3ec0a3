//! Test support for the hardening layers: root checks, workers run to their end, polling and
//! errno text; the gated children, workers and temporary directories are shared (`common`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
pub use common::*;

/// False (with the reason printed) when not root.
pub fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED: these tests need root");
    }
    root
}

/// Runs a worker to its end; panics with its output unless it succeeded. Returns stdout.
pub fn run_worker(mode: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = worker_command(mode);
    cmd.envs(envs.iter().copied());
    let out = cmd.output().expect("start worker");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "worker {mode} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
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

/// `Ok` or the errno of a std I/O result, as text for `RESULT` lines.
pub fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => match e.raw_os_error() {
            Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
            None => format!("error {e}"),
        },
    }
}
