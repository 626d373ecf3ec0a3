//! The kernel-facing pieces the supervisor uses, each behind a small function set.

pub mod cgroup;
pub mod dirs;
pub mod harden;
pub mod landlock;
pub mod memfd;
pub mod notify;
pub mod procs;
pub mod records_mount;
pub mod sockets;
