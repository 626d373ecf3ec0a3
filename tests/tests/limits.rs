//! The limits of issue 3, measured where the kernel enforces them: OOM kills the whole job
//! (swap off), CPU quota from the job's own cgroup accounting, pinned cores, the default
//! pids limit, io bandwidth on a real loop device, the writable space's size, the timeout,
//! refusal of limits the host cannot apply, and what `rnx job status` says.
//!
//! Run: `cargo test -p joblet-tests --test limits` as root (binaries built first with
//! `cargo build --workspace --bins`); on cgroup v2 through `scripts/test-v2.sh`.

#![forbid(unsafe_code)]

use std::time::Duration;

#[path = "limits/cpu.rs"]
mod cpu;
#[path = "limits/io.rs"]
mod io;
#[path = "limits/lifecycle.rs"]
mod lifecycle;
#[path = "limits/memory.rs"]
mod memory;

/// Generous: the cgroup v2 guest runs under software emulation.
pub const WAIT: Duration = Duration::from_secs(240);
