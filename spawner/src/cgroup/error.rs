//! The one error type of the cgroup module. Every variant names the step that failed and the
//! file or directory involved, so a log line alone tells an operator what to fix.

use std::io;
use std::path::PathBuf;

use joblet_ipc_proto::settings::CgroupMode;
use joblet_ipc_proto::validate::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup mount: {detail}")]
    Mount { detail: String },
    #[error(
        "cgroup mode {mode:?}: controller(s) {controller} not available to us (not mounted, not \
         enabled in the parent's cgroup.subtree_control, or not built into the kernel)"
    )]
    MissingController {
        controller: String,
        mode: CgroupMode,
    },
    #[error("our own cgroup: {detail}")]
    OwnCgroup { detail: String },
    #[error("cgroup base name {name:?} must be 1-63 letters, digits, '_' or '-'")]
    BaseName { name: String },
    #[error("creating cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("unexpected content in {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("moving pid {pid} into {path}: {source}")]
    Attach {
        pid: i32,
        path: PathBuf,
        source: io::Error,
    },
    #[error("signalling pid {pid}: {source}")]
    Signal { pid: i32, source: io::Error },
    #[error("removing cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cgroup {path} still holds processes or child cgroups")]
    NotEmpty { path: PathBuf },
    #[error("registering an OOM notification on {path}: {source}")]
    OomWatch { path: PathBuf, source: io::Error },
    #[error("limit {limit} cannot be applied on this host: {detail}")]
    LimitUnavailable { limit: &'static str, detail: String },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl CgroupError {
    /// True for errors caused by the request rather than the host (the frontend answers them
    /// as invalid arguments).
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            CgroupError::LimitUnavailable { .. } | CgroupError::Invalid(_)
        )
    }
}
