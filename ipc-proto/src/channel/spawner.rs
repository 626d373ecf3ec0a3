//! api-frontend → spawner: start, stop and list jobs; the spawner pushes exit events.
//!
//! Requests carry an id that the reply echoes, because exit events arrive on the same
//! connection at any time. Exit events are repeated (on every new connection and until
//! acknowledged) so an exit status survives the death of the frontend or of the spawner:
//! the frontend records it in stated, then sends [`SpawnerRequest::AckExit`].

use serde::{Deserialize, Serialize};

use crate::RemoteError;
use crate::codec::Message;
use crate::job::{JobId, JobOutcome, LaunchSpec};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToSpawner {
    pub id: u64,
    pub request: SpawnerRequest,
}

// Messages are decoded once and moved, never kept in bulk: variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SpawnerRequest {
    /// Prepare a job (its cgroup, its shim) and hold it until `ReleaseJob`: nothing of it runs
    /// before the frontend's record of it is durable, and the frontend writes that record
    /// while the spawner prepares. Carries one fd (a directory of staged uploads) when
    /// `launch.has_upload_dir` is set. Answered with `Started` once the command was exec'd;
    /// `LaunchFailed` when the job was created but failed before exec, or was stopped while
    /// held (its exit event follows as for any job); `Error` when it was refused and nothing
    /// was created.
    StartJob { job: JobId, launch: LaunchSpec },
    /// Let a held job start. Answered with `Acked`; the StartJob's reply follows.
    ReleaseJob { job: JobId },
    /// SIGTERM to every process of the job, then after `grace_ms` kill them all; a held job
    /// is let go without starting.
    StopJob { job: JobId, grace_ms: u32 },
    /// The jobs the spawner holds (running, or exited and not yet acknowledged), a page at a
    /// time, after `after` in id order.
    ListJobs { after: Option<JobId> },
    /// The frontend recorded this job's exit: the spawner may release its resources.
    AckExit { job: JobId },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromSpawner {
    Reply { id: u64, reply: SpawnerReply },
    Event(SpawnerEvent),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SpawnerReply {
    Started { pid: u32, started_ns: u64 },
    LaunchFailed { outcome: JobOutcome },
    Stopping,
    Jobs { jobs: Vec<SpawnedJob>, more: bool },
    Acked,
    Error(RemoteError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SpawnerEvent {
    Exited {
        job: JobId,
        outcome: JobOutcome,
        ended_ns: u64,
    },
}

/// A job as the spawner knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnedJob {
    pub job: JobId,
    /// Host pid of the job's PID 1.
    pub pid: u32,
    pub started_ns: u64,
    /// Set once it ended and until the exit is acknowledged.
    pub exited: Option<(JobOutcome, u64)>,
}

impl Message for ToSpawner {
    fn expected_fds(&self) -> usize {
        match &self.request {
            SpawnerRequest::StartJob { launch, .. } => usize::from(launch.has_upload_dir),
            _ => 0,
        }
    }
    fn name(&self) -> &'static str {
        match self.request {
            SpawnerRequest::StartJob { .. } => "StartJob",
            SpawnerRequest::ReleaseJob { .. } => "ReleaseJob",
            SpawnerRequest::StopJob { .. } => "StopJob",
            SpawnerRequest::ListJobs { .. } => "ListJobs",
            SpawnerRequest::AckExit { .. } => "AckExit",
        }
    }
}

impl Message for FromSpawner {
    fn name(&self) -> &'static str {
        match self {
            FromSpawner::Reply { .. } => "Reply",
            FromSpawner::Event(_) => "Event",
        }
    }
}
