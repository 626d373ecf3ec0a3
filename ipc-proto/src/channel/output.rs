//! spawner → persistd: hand over the read ends of a job's output pipes.
//!
//! The spawner never reads job output. It sends the pipes' read ends here and keeps its own
//! copies open (and so does the job's shim) until persistd reports the output drained, so
//! nothing is lost while persistd restarts: unread output waits in the pipe.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::job::JobId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToPersistOutput {
    /// Carries two fds: the read ends of stdout and stderr, in that order. Sent again after
    /// either side restarts; persistd ignores (closes) fds for a job it already reads.
    Attach { job: JobId, started_ns: u64 },
    /// Carries one fd per entry of `dirs`: the job's cgroup directories (`O_DIRECTORY`), for
    /// persistd to sample metrics from without privileges. Sent with `Attach`, and again
    /// after either side restarts; persistd stops sampling when the job's output is drained.
    Watch { job: JobId, dirs: Vec<CgroupDir> },
}

/// Which cgroup directory an fd of [`ToPersistOutput::Watch`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupDir {
    /// The job's cgroup v2 directory (every controller).
    Unified,
    /// cgroup v1 hierarchies.
    Cpu,
    Cpuacct,
    Memory,
    Blkio,
    Pids,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromPersistOutput {
    /// persistd reads this job's output now.
    Attached { job: JobId },
    /// Both streams reached end of file and everything is stored; the spawner may close its
    /// copies of the pipes.
    Drained { job: JobId },
}

impl Message for ToPersistOutput {
    fn expected_fds(&self) -> usize {
        match self {
            ToPersistOutput::Attach { .. } => 2,
            ToPersistOutput::Watch { dirs, .. } => dirs.len(),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            ToPersistOutput::Attach { .. } => "Attach",
            ToPersistOutput::Watch { .. } => "Watch",
        }
    }
}

impl Message for FromPersistOutput {
    fn name(&self) -> &'static str {
        match self {
            FromPersistOutput::Attached { .. } => "Attached",
            FromPersistOutput::Drained { .. } => "Drained",
        }
    }
}
