//! Files a client uploads with RunJob: checked ([`plan`]), then staged in the frontend's
//! private directory `data_dir/uploads/<job>/` ([`stage`]) and handed to the spawner as one
//! directory fd, which copies the tree into the job's `/work`.
//!
//! The stager writes with `openat`, `O_NOFOLLOW` and `O_EXCL` below a directory only this
//! daemon's user can enter, so no path a client sends can reach outside it; the spawner
//! checks the tree again as it copies. An immediate job's staging directory is removed
//! once the spawner answered; a SCHEDULED job's stays until it starts or is canceled, and
//! leftovers of a crash are swept at start-up.

pub mod plan;
pub mod stage;

use joblet_ipc_proto::validate::ValidationError;
use tonic::Status;

pub use plan::{UploadPlan, plan};
pub use stage::UploadStore;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Path(ValidationError),
    #[error("invalid upload path: {0:?} is given twice")]
    Duplicate(String),
    #[error("invalid upload path: {path:?} is inside {file:?}, which is uploaded as a file")]
    InsideFile { path: String, file: String },
    #[error("invalid upload {0:?}: a directory cannot have content")]
    DirectoryWithContent(String),
    #[error("uploads total more than {max} bytes, this server's limit (grpc.maxRecvMsgSize)")]
    TooLarge { max: u64 },
    #[error("{count} uploads is more than the {max} one job may have; upload an archive instead")]
    TooMany { count: usize, max: usize },
    #[error("cannot stage upload {path:?}: {step}: {source}")]
    Stage {
        path: String,
        step: &'static str,
        source: std::io::Error,
    },
}

impl UploadError {
    /// Whether the client's request is at fault (rather than this server).
    pub fn is_request_error(&self) -> bool {
        !matches!(self, UploadError::Stage { .. })
    }
}

impl From<UploadError> for Status {
    fn from(e: UploadError) -> Status {
        match &e {
            UploadError::Stage { source, .. }
                if source.raw_os_error() == Some(nix::libc::ENOSPC) =>
            {
                Status::resource_exhausted(format!("{e} (the server's upload area is full)"))
            }
            UploadError::Stage { .. } => Status::internal(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}
