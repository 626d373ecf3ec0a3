//! Job metrics: each running job's cgroup is sampled through directory fds the spawner hands
//! over (`ToPersistOutput::Watch`), and the samples are stored next to the job's output.
//!
//! | module | concern |
//! |---|---|
//! | [`parse`] | the v1 and v2 cgroup file formats |
//! | [`cgroup`] | the handed-over directories and reading counters through them |
//! | [`sampling`] | the watched set, CPU percentages, storing samples (blocking) |
//! | [`sampler`] | the single timer task that drives it |
//!
//! The samples themselves live in [`crate::store::MetricLog`]; they are served by
//! [`crate::metric_reader`].

pub mod cgroup;
pub mod parse;
pub mod sampler;
pub mod sampling;

#[cfg(test)]
mod sampling_tests;

pub use cgroup::{CgroupDirs, Counters, Gone, WatchError};
pub use sampler::Sampler;
pub use sampling::{Sampling, TickReport};
