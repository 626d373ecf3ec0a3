//! Joblet's privileged core: the only process that acts as root. No network, no async
//! runtime, no parser but postcard on one Unix socket; a single-threaded poll loop.
//!
//! | module | concern |
//! |---|---|
//! | [`startup`] | settings, hardening, start-up checks, then the loop |
//! | [`daemon`] | the state and the `poll(2)` loop |
//! | [`server`] | client connections, handshake, permit table, replies, events |
//! | [`lifecycle`] | StartJob, shim reports, job end, release |
//! | [`stop`] | StopJob, timeouts, shutdown, timers |
//! | [`adopt`] | picking jobs up after a restart |
//! | [`output`] | handing pipe read ends to persistd |
//! | [`registry`] | the job table, ListJobs pages |
//! | [`launch`] | shim, job init, root filesystem, identity, exec |
//! | [`record`] | per-job records on disk |
//! | [`cgroup`] | cgroup v1/v2 drivers |

pub mod adopt;
pub mod cgroup;
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
