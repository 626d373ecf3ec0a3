//! How failures of the internal links and of the other daemons become gRPC statuses.

use joblet_ipc_proto::{RemoteError, RemoteErrorKind};
use tonic::{Code, Status};

/// Why a request to another Joblet daemon did not get an answer it could use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The daemon could not be reached (down, restarting, connection broken or silent).
    #[error("{daemon} is unavailable: {reason}")]
    Unavailable {
        daemon: &'static str,
        reason: String,
    },
    /// The daemon answered the request with an error.
    #[error("{0}")]
    Remote(RemoteError),
    /// The daemon answered with a message that does not answer this request.
    #[error("{daemon} answered {request} with {got}")]
    Unexpected {
        daemon: &'static str,
        request: &'static str,
        got: &'static str,
    },
}

impl LinkError {
    pub fn unavailable(daemon: &'static str, reason: impl ToString) -> LinkError {
        LinkError::Unavailable {
            daemon,
            reason: reason.to_string(),
        }
    }

    /// The remote error's kind, if the daemon answered with one.
    pub fn remote_kind(&self) -> Option<RemoteErrorKind> {
        match self {
            LinkError::Remote(e) => Some(e.kind),
            _ => None,
        }
    }
}

pub fn code_for(kind: RemoteErrorKind) -> Code {
    match kind {
        RemoteErrorKind::InvalidArgument => Code::InvalidArgument,
        RemoteErrorKind::NotFound => Code::NotFound,
        RemoteErrorKind::AlreadyExists => Code::AlreadyExists,
        RemoteErrorKind::FailedPrecondition => Code::FailedPrecondition,
        RemoteErrorKind::ResourceExhausted => Code::ResourceExhausted,
        RemoteErrorKind::Unavailable => Code::Unavailable,
        RemoteErrorKind::Internal => Code::Internal,
    }
}

impl From<LinkError> for Status {
    fn from(e: LinkError) -> Status {
        match e {
            LinkError::Unavailable { .. } => Status::unavailable(e.to_string()),
            // The remote message is already written for the client.
            LinkError::Remote(r) => Status::new(code_for(r.kind), r.message),
            LinkError::Unexpected { .. } => Status::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_remote_kind_maps_to_its_code() {
        let table = [
            (RemoteErrorKind::InvalidArgument, Code::InvalidArgument),
            (RemoteErrorKind::NotFound, Code::NotFound),
            (RemoteErrorKind::AlreadyExists, Code::AlreadyExists),
            (
                RemoteErrorKind::FailedPrecondition,
                Code::FailedPrecondition,
            ),
            (RemoteErrorKind::ResourceExhausted, Code::ResourceExhausted),
            (RemoteErrorKind::Unavailable, Code::Unavailable),
            (RemoteErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in table {
            let s = Status::from(LinkError::Remote(RemoteError::new(kind, "why")));
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), "why");
        }
    }

    #[test]
    fn link_failures_name_the_daemon() {
        let s = Status::from(LinkError::unavailable("stated", "connection refused"));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "stated is unavailable: connection refused");
        let s = Status::from(LinkError::Unexpected {
            daemon: "spawner",
            request: "StopJob",
            got: "Jobs",
        });
        assert_eq!(s.code(), Code::Internal);
        assert!(s.message().contains("StopJob"));
    }
}
