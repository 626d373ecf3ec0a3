//! The one error type of the cgroup module. Every variant names the step that failed and the
//! file or directory involved, so a log line alone tells an operator what to fix.

use std::io;
use std::path::{Path, PathBuf};

use joblet_ipc_proto::{settings::CgroupMode, validate::ValidationError};

use super::device_bpf::DeviceFilterError;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup mount: {0}")]
    Mount(String),
    #[error(
        "cgroup mode {mode:?}: controller(s) {controller} not available to us (not mounted, not \
         enabled in the parent's cgroup.subtree_control, or not built into the kernel)"
    )]
    MissingController {
        controller: String,
        mode: CgroupMode,
    },
    #[error("our own cgroup: {0}")]
    OwnCgroup(String),
    #[error("cgroup base name {0:?} must be 1-63 letters, digits, '_' or '-'")]
    BaseName(String),
    #[error("creating cgroup {0}: {1}")]
    Create(PathBuf, io::Error),
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unexpected content in {0}: {1}")]
    Parse(PathBuf, String),
    #[error("signalling pid {0}: {1}")]
    Signal(i32, io::Error),
    #[error("cgroup {0} still holds processes or child cgroups")]
    NotEmpty(PathBuf),
    #[error("limit {limit} cannot be applied on this host: {detail}")]
    LimitUnavailable { limit: &'static str, detail: String },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    DeviceFilter(#[from] DeviceFilterError),
}

pub(super) fn io_error(step: &'static str, path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

/// [`CgroupError::MissingController`] naming `controller`.
pub(super) fn missing(controller: &str, mode: CgroupMode) -> CgroupError {
    let controller = controller.to_owned();
    CgroupError::MissingController { controller, mode }
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
