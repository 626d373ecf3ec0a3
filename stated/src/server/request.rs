//! What each request of the state channel does, and its reply.

use joblet_ipc_proto::RemoteError;
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::job::JobId;

use crate::store::{Store, StoreError, WriteOp};

/// A request, sorted by how it runs: writes go to the writer, reads run on their own.
#[derive(Debug)]
pub(super) enum Action {
    Write(WriteOp),
    Read(Read),
}

#[derive(Debug)]
pub(super) enum Read {
    Get(JobId),
    Resolve(String),
    List(Option<JobId>),
}

pub(super) fn classify(request: ToState) -> Action {
    match request {
        ToState::Create { record } => Action::Write(WriteOp::Create(Box::new(record))),
        ToState::Transition {
            job,
            to,
            at_ns,
            outcome,
        } => Action::Write(WriteOp::Transition {
            job,
            to,
            at_ns,
            outcome,
        }),
        ToState::Delete { job } => Action::Write(WriteOp::Delete(job)),
        ToState::Get { job } => Action::Read(Read::Get(job)),
        ToState::Resolve { prefix } => Action::Read(Read::Resolve(prefix)),
        ToState::List { after } => Action::Read(Read::List(after)),
    }
}

/// Runs a read (blocking: call it off the async threads).
pub(super) fn run_read(conn: u64, store: &Store, read: Read) -> FromState {
    let result = match read {
        Read::Get(job) => store.get(&job).map(FromState::Record),
        Read::Resolve(prefix) => store.resolve(&prefix).map(FromState::Resolved),
        Read::List(after) => store.list(after.as_ref()).map(|page| FromState::Records {
            records: page.records,
            more: page.more,
        }),
    };
    result.unwrap_or_else(|e| error_reply(conn, &e))
}

/// The reply to a write once the writer has answered.
pub(super) fn write_reply(conn: u64, result: Result<(), StoreError>) -> FromState {
    match result {
        Ok(()) => FromState::Done,
        Err(e) => error_reply(conn, &e),
    }
}

fn error_reply(conn: u64, e: &StoreError) -> FromState {
    if e.is_internal() {
        tracing::warn!(conn, error = %e, "request failed in the store");
    } else {
        tracing::debug!(conn, error = %e, "request refused");
    }
    FromState::Error(RemoteError::from(e))
}
