//! The `rnx` CLI end to end, against the real system: every command and flag, both output
//! forms, and for each kind of bad input its message and exit code (issue 4).
//!
//! Checks inside a test do not stop at the first failure: each test reports every check
//! that failed, so one run shows all the server work that is still missing.
//!
//! Needs root and the workspace's binaries (`cargo build --workspace --bins`); `script`
//! (util-linux) for the terminal checks.

#[path = "rnx_cli/access.rs"]
mod access;
#[path = "rnx_cli/bad_input.rs"]
mod bad_input;
#[path = "rnx_cli/jobs.rs"]
mod jobs;
#[path = "rnx_cli/observe.rs"]
mod observe;
#[path = "rnx_cli/scheduling.rs"]
mod scheduling;
#[path = "rnx_cli/support.rs"]
mod support;
#[path = "rnx_cli/uploads.rs"]
mod uploads;
