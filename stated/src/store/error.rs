//! Errors of the store, and how each reaches the client.

use std::path::PathBuf;

use joblet_ipc_proto::RemoteError;
use joblet_ipc_proto::job::{JobId, JobState};

use crate::machine::MachineError;

/// Why a request on the store failed. Everything but `Storage`, `Undecodable` and
/// `WriterStopped` is the request's fault and left the store unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("job {0} already exists")]
    AlreadyExists(JobId),
    #[error("no job id starts with {0:?}")]
    NoMatch(String),
    #[error("ambiguous prefix, {count} jobs match {prefix:?}")]
    Ambiguous { prefix: String, count: u64 },
    #[error(
        "invalid job id prefix {0:?}: give 1 to 36 characters of lowercase hex digits and dashes"
    )]
    BadPrefix(String),
    #[error(transparent)]
    Rule(#[from] MachineError),
    #[error("job {job} is {state}; only a finished job can be deleted")]
    NotFinished { job: JobId, state: JobState },
    #[error("record of job {job} would be {len} bytes encoded, more than the {max} bytes allowed")]
    TooLarge { job: JobId, len: usize, max: usize },
    #[error(
        "record of job {job} cannot be decoded (written by an incompatible version?): {reason}"
    )]
    Undecodable { job: String, reason: String },
    #[error("cannot encode the record of job {job}: {reason}")]
    Encode { job: JobId, reason: String },
    #[error("database {step} failed: {reason}")]
    Storage { step: &'static str, reason: String },
    #[error("the store's writer has stopped; the daemon is shutting down")]
    WriterStopped,
}

impl StoreError {
    pub(crate) fn storage(step: &'static str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Storage {
            step,
            reason: e.into().to_string(),
        }
    }

    /// True when the fault is the store's, not the request's: worth a warning in the log.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            StoreError::Undecodable { .. }
                | StoreError::Encode { .. }
                | StoreError::Storage { .. }
                | StoreError::WriterStopped
        )
    }
}

impl From<&StoreError> for RemoteError {
    fn from(e: &StoreError) -> RemoteError {
        use joblet_ipc_proto::RemoteErrorKind as Kind;
        let kind = match e {
            StoreError::NotFound(_) | StoreError::NoMatch(_) => Kind::NotFound,
            StoreError::AlreadyExists(_) => Kind::AlreadyExists,
            StoreError::Ambiguous { .. }
            | StoreError::BadPrefix(_)
            | StoreError::TooLarge { .. } => Kind::InvalidArgument,
            StoreError::Rule(MachineError::Illegal { .. }) | StoreError::NotFinished { .. } => {
                Kind::FailedPrecondition
            }
            StoreError::Rule(_) => Kind::InvalidArgument,
            StoreError::WriterStopped => Kind::Unavailable,
            StoreError::Undecodable { .. }
            | StoreError::Encode { .. }
            | StoreError::Storage { .. } => Kind::Internal,
        };
        RemoteError::new(kind, e.to_string())
    }
}

/// Why the store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database path {0} must be absolute and name a file")]
    BadPath(PathBuf),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is owned by uid {owner}, not by this daemon's uid {me}")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("{0} is not a regular file (a symlink or something else is in the way)")]
    NotAFile(PathBuf),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot restrict the mode of {path}: {source}")]
    Chmod {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database file {path}: {source}")]
    OpenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Database {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("cannot prepare the database: {0}")]
    Tables(StoreError),
    #[error("cannot read or write the journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the journal {path} cannot be used: {reason}")]
    JournalFrame { path: PathBuf, reason: String },
    #[error("cannot start the writer thread: {0}")]
    Writer(std::io::Error),
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> OpenError {
        OpenError::Tables(e)
    }
}
