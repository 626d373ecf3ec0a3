//! The escape suite (issue 3): every case is a hostile action from inside a job, or from a
//! client, that must fail; each asserts the failure as the job (or client) saw it, with the
//! errno where there is one, and the host's state afterwards (files unchanged or absent,
//! daemons the same processes, limit files holding their values, no new mount, …).
//!
//! The jobs use only what a Debian host has in the default allowed mounts: `sh`, coreutils,
//! util-linux, and Debian's `/usr/bin/python3` (with `ctypes`) for raw system calls; a case
//! needing Python prints why it is skipped where there is none. Requests the client would
//! refuse itself are also sent raw through joblet-sdk-python's gRPC stub.
//!
//! Run: `cargo test -p joblet-tests --test security` as root (the binaries built first with
//! `cargo build --workspace --bins`); on cgroup v2 through `scripts/test-v2.sh`.
//!
//! | area | module |
//! |---|---|
//! | shadow, `/proc/*/root`, `..`, read-only mounts, `/proc/self/exe`, fds, file handles | `files` |
//! | `mknod`, host devices, filling `/work`, `/tmp`, `/dev/shm` | `storage` |
//! | modules, kexec/reboot, bpf, perf, keys, userfaultfd, io_uring, clock, hostname | `kernel` |
//! | mounts of every kind, cgroup filesystems, `chroot` | `mounts` |
//! | user namespaces, `setns`, ptrace, `kill -1` | `namespaces` |
//! | host processes, setuid binaries, cgroup files, rlimits | `processes` |
//! | fork bomb, memory, timeout | `exhaustion` |
//! | `/proc` masks, `/proc/sys`, sysrq | `procfs` |
//! | host services, raw sockets, links | `network` |
//! | upload paths, work dirs, control variables, upload symlinks | `requests` |
//! | viewer role, foreign CA, unknown role | `access` |

#![forbid(unsafe_code)]

#[path = "security/access.rs"]
mod access;
#[path = "security/common.rs"]
mod common;
#[path = "security/exhaustion.rs"]
mod exhaustion;
#[path = "security/files.rs"]
mod files;
#[path = "security/kernel.rs"]
mod kernel;
#[path = "security/mounts.rs"]
mod mounts;
#[path = "security/namespaces.rs"]
mod namespaces;
#[path = "security/network.rs"]
mod network;
#[path = "security/processes.rs"]
mod processes;
#[path = "security/procfs.rs"]
mod procfs;
#[path = "security/requests.rs"]
mod requests;
#[path = "security/storage.rs"]
mod storage;
