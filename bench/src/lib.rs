//! Benchmarks of Joblet side by side with bubblewrap and runc (`joblet-bench`), and the
//! report of the privileged surface for auditors (`joblet-surface`).
//!
//! | module | concern |
//! |---|---|
//! | [`system`], [`bins`], [`config_edit`] | starting the real system with a fresh configuration |
//! | [`client`], [`ours`] | the long-lived mTLS gRPC client, and running our jobs |
//! | [`peers`] | bubblewrap, runc and `unshare` |
//! | [`isolation`] | the probe that proves a sampled run was isolated |
//! | [`phases`] | latency, throughput, logs, scale, each ending with the teardown check |
//! | [`teardown`], [`procs`], [`memory`], [`cpu`] | reading the host: leftovers, process table, RSS/PSS, CPU time |
//! | [`stats`], [`report`], [`machine`] | min/median/p99, the printed tables, the machine |
//! | [`surface`] | the privileged-surface report |

#![forbid(unsafe_code)]

pub mod bins;
pub mod client;
pub mod config_edit;
pub mod cpu;
pub mod ctx;
pub mod error;
pub mod isolation;
pub mod machine;
pub mod memory;
pub mod ours;
pub mod peers;
pub mod phases;
pub mod procs;
pub mod report;
pub mod stats;
pub mod surface;
pub mod system;
pub mod teardown;
