//! Errors of the transport ([`IpcError`]) and errors a server returns to its client over the
//! wire ([`RemoteError`]).

use serde::{Deserialize, Serialize};

/// Why a connection could not be used; every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversized { len: usize, max: usize },
    #[error("frame was truncated by the kernel (sender exceeded the frame limit)")]
    Truncated,
    #[error("file descriptors were truncated by the kernel (too many sent)")]
    FdsTruncated,
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame carries {got} file descriptors, {expected} expected for {message}")]
    UnexpectedFds {
        message: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("peer uid {uid} is not allowed on channel {channel}")]
    PeerRefused { uid: u32, channel: &'static str },
    #[error("handshake failed: {0}")]
    Handshake(String),
}

impl IpcError {
    /// True when the error is an orderly close rather than a protocol violation or I/O fault.
    pub fn is_closed(&self) -> bool {
        matches!(self, IpcError::Closed)
    }
}

/// Broad class of a [`RemoteError`]; the frontend maps it to a gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Internal,
}

/// An error a server answers a request with; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::NotFound, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::FailedPrecondition, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::Unavailable, message)
    }
}
