//! Harness for the end-to-end suites: starts the whole Joblet system (the `joblet`
//! supervisor and its helpers) in a temporary directory with a configuration and
//! certificates freshly made by `joblet init`, on 127.0.0.1 and a free port, drives it with
//! `rnx`, and checks on stop that nothing of ours remains.
//!
//! The binaries come from the workspace's target directory: build them first with
//! `cargo build --workspace --bins` (the test script does).

#![forbid(unsafe_code)]

pub mod cgroupfs;
pub mod clients;
pub mod config;
pub mod grpc;
pub mod host;
pub mod hostile;
pub mod loopdev;
pub mod sse;
pub mod system;
pub mod tail;

pub use system::{Job, RnxOutput, System};

use std::path::PathBuf;

/// Directory holding the workspace's binaries (next to the test executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("JOBLET_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of one of our binaries, with a helpful panic if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// True when the tests run as root (the suites need it for namespaces and cgroups).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips the calling test with a printed reason unless it runs as root; in CI (where it
/// always runs as root) a missing root is a failure, not a skip.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            if std::env::var("CI").is_ok() {
                panic!("CI runs the end-to-end suites as root, but this test is not root");
            }
            eprintln!("SKIPPED: needs root (namespaces, cgroups)");
            return;
        }
    };
}
