//! The job service: requests (`run`, `query`, `manage`, `logs`), the conversions between
//! public messages and the job model, and the background `lifecycle` (exits, reconciliation).

pub mod convert;
pub mod duration;
pub mod lifecycle;
pub mod logs;
pub mod lookup;
pub mod manage;
pub mod query;
pub mod run;
pub mod service;
pub mod tracker;
