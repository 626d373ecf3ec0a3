//! persistd: Joblet's log and metrics store.
//!
//! The spawner hands over the read ends of each job's stdout and stderr pipes (output
//! channel); persistd moves their bytes into per-job files with `splice(2)` and serves them to
//! the frontend by sequence number, history and live from one ordered index (logs channel).
//! The spawner also hands over each job's cgroup directories; persistd samples them every
//! interval and serves the samples the same way.
//! It runs as its own user with no capabilities; job output never passes through a
//! privileged process.
//!
//! | module | concern |
//! |---|---|
//! | [`store`] | the on-disk log: data files, index records, crash recovery |
//! | [`pump`] | reading a job's pipes into its log, with backoff on write failures |
//! | [`registry`] | the jobs known, attach and delete rules |
//! | [`metrics`] | sampling each running job's cgroup through directory fds |
//! | [`output`] | the output channel (spawner → persistd) |
//! | [`logs`], [`reader`], [`metric_reader`] | the logs channel (frontend → persistd) |
//! | [`server`] | accept loops |
//! | [`harden`] | start-up hardening |

// One `unsafe` block exists, in `pump::register` (tokio's fd registration); everything else
// is safe code.
#![deny(unsafe_code)]

pub mod clock;
pub mod harden;
pub mod logs;
pub mod metric_reader;
pub mod metrics;
pub mod output;
pub mod pump;
pub mod reader;
pub mod registry;
pub mod server;
pub mod store;
