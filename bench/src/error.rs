//! Why a benchmark phase could not produce its figures.

use crate::client::ClientError;
use crate::peers::PeerError;
use crate::system::SystemError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    System(#[from] SystemError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A figure is never reported for a run that was not isolated.
    #[error("{who}: not isolated: {reason}")]
    NotIsolated { who: String, reason: String },
    #[error("{who}: the job did not complete: {detail}")]
    JobFailed { who: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Check(String),
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}
