//! api-frontend → stated: the job records and their state machine.
//!
//! stated enforces [`JobState::can_move_to`]: an illegal transition is refused, and a
//! transition to the state the job is already in succeeds without change, so the frontend can
//! safely repeat a transition after a restart (exit events are delivered at least once).

use serde::{Deserialize, Serialize};

use crate::RemoteError;
use crate::codec::Message;
use crate::job::{JobId, JobOutcome, JobRecord, JobState};

// Messages are decoded once and moved, never kept in bulk: variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToState {
    /// Store a new record; refused if the id exists.
    Create {
        record: JobRecord,
    },
    /// Move a job to `to`, recording the time (start time when entering RUNNING, end time
    /// when entering a terminal state) and, for terminal states, the outcome.
    Transition {
        job: JobId,
        to: JobState,
        at_ns: u64,
        outcome: Option<JobOutcome>,
    },
    Get {
        job: JobId,
    },
    /// The one job whose id starts with `prefix` (at least 1 character); ambiguous or
    /// unknown prefixes are errors.
    Resolve {
        prefix: String,
    },
    /// Records in id order after `after`, as many as fit in a frame.
    List {
        after: Option<JobId>,
    },
    /// Remove a record; refused unless the job is in a terminal state.
    Delete {
        job: JobId,
    },
}

// Messages are decoded once and moved, never kept in bulk: variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromState {
    Done,
    Record(JobRecord),
    Records { records: Vec<JobRecord>, more: bool },
    Resolved(JobId),
    Error(RemoteError),
}

impl Message for ToState {
    fn name(&self) -> &'static str {
        match self {
            ToState::Create { .. } => "Create",
            ToState::Transition { .. } => "Transition",
            ToState::Get { .. } => "Get",
            ToState::Resolve { .. } => "Resolve",
            ToState::List { .. } => "List",
            ToState::Delete { .. } => "Delete",
        }
    }
}

impl Message for FromState {
    fn name(&self) -> &'static str {
        match self {
            FromState::Done => "Done",
            FromState::Record(_) => "Record",
            FromState::Records { .. } => "Records",
            FromState::Resolved(_) => "Resolved",
            FromState::Error(_) => "Error",
        }
    }
}
