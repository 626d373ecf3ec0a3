//! Monitoring: the host for `MonitoringService` (collectors that parse `/proc`, `/sys` and
//! `/etc`, one per concern, each a pure parser of a file's text plus a thin reader; the
//! report that assembles them from two readings; the service), and the frontend's own
//! numbers for Prometheus (job census, RPC latency, the exposition format).
//!
//! Everything read is world-readable, so the unprivileged frontend can collect it. Nothing
//! here touches the network: the cloud is recognised from firmware tables only.

pub mod census;
pub mod cloud;
pub mod collector;
pub mod cpu;
pub mod diskio;
pub mod disks;
pub mod exporter;
pub mod exposition;
pub mod filter;
pub mod host;
pub mod memory;
pub mod network;
pub mod processes;
pub mod report;
pub mod rpc_stats;
pub mod service;
pub mod source;
pub mod time;

pub use service::MonitoringApi;
