//! gRPC metadata of ours beside the public messages, which have no field for it and must stay
//! wire-compatible: clients that know (rnx) read it, others ignore it.
//!
//! GetJobStatus' response headers say why a job ended ([`END_REASON`], [`END_SIGNAL`],
//! [`END_DETAIL`]); the trailers of a GetJobLogs stream that ends with its job say the same,
//! and its final state ([`FINAL_STATUS`], [`EXIT_CODE`]).

/// Why the job ended: `exited`, `signaled`, `oom_killed`, `stopped`, `timeout`,
/// `launch_failed`, `lost` or `canceled`.
pub const END_REASON: &str = "joblet-end-reason";
/// The signal that ended it, if one did.
pub const END_SIGNAL: &str = "joblet-end-signal";
/// Detail for people, such as a launch error.
pub const END_DETAIL: &str = "joblet-end-detail";
/// The job's final status, as GetJobStatus names it (`COMPLETED`, `FAILED`, ...).
pub const FINAL_STATUS: &str = "joblet-final-status";
/// The job's exit code, as GetJobStatus reports it.
pub const EXIT_CODE: &str = "joblet-exit-code";

/// The final status and exit code a log stream's trailers tell, when they tell both (a
/// stream that ended before the exit was recorded, or a server that does not send them,
/// tells neither). Whether the status is terminal is the caller's to judge.
pub fn final_state(trailers: &tonic::metadata::MetadataMap) -> Option<(&str, i32)> {
    let get = |key| trailers.get(key)?.to_str().ok().map(str::trim);
    Some((get(FINAL_STATUS)?, get(EXIT_CODE)?.parse().ok()?))
}
