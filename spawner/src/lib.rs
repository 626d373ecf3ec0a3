//! Joblet's privileged core: the only process that acts as root. No network, no async
//! runtime, no parser but postcard on one Unix socket; a single-threaded poll loop.
//!
//! | module | concern |
//! |---|---|
//! | [`startup`] | settings, hardening, then the loop |
//! | [`checks`] | start-up checks: features present, a probe launch |
//! | [`daemon`] | the state and the `poll(2)` loop |
//! | [`server`] | client connections, handshake, permit table, replies, events |
//! | [`lifecycle`] | StartJob, shim records, job end, release |
//! | [`stop`] | StopJob, timeouts, shutdown, timers |
//! | [`adopt`] | picking jobs up after a restart |
//! | [`output`] | handing pipe read ends to persistd |
//! | [`registry`] | the job table, ListJobs pages |
//! | [`launch`] | shim, job init, root filesystem, uploads, identity, Landlock, seccomp, exec |
//! | [`record`] | per-job records on disk |
//! | [`cgroup`] | cgroup v1/v2, the v2 device program |

pub mod adopt;
pub mod cgroup;
pub mod checks;
pub mod clock;
pub mod daemon;
pub mod harden;
pub mod launch;
pub mod lifecycle;
pub mod outcome;
pub mod output;
pub mod record;
pub mod registry;
pub mod server;
pub mod settings;
pub mod startup;
pub mod stop;
pub mod sys;

/// The value of `r`, or the default after logging why it could not be had: for the steps
/// whose failure is reported but must not stop the loop.
pub fn logged<T: Default, E: std::fmt::Display>(
    r: Result<T, E>,
    what: impl std::fmt::Display,
) -> T {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot {what}");
        T::default()
    })
}
