//! The job service: requests (`run`, `query`, `manage`, `logs`, `metrics`), scheduled jobs
//! (`scheduled`), the conversions between public messages and the job model, and the
//! background `lifecycle` (exits, reconciliation).

pub mod convert;
pub mod duration;
pub mod end_metadata;
pub mod launch;
pub mod lifecycle;
pub mod log_read;
pub mod logs;
pub mod lookup;
pub mod manage;
pub mod metrics;
pub mod query;
pub mod run;
pub mod schedule;
pub mod scheduled;
pub mod service;
pub mod staged;
pub mod tracker;
