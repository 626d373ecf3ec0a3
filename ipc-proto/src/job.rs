//! The job model shared by every process: identity, specification, limits, states, outcome.
//!
//! Times are nanoseconds since the Unix epoch (`*_ns`, 0 = unset); the frontend converts them
//! to RFC 3339 for the public API.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// A job's identity: a lowercase UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
///
/// It is validated whenever one is built or decoded, so a `JobId` is always safe to use as a
/// file or cgroup name: it cannot hold `/`, `..` or anything but hex digits and dashes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub const LEN: usize = 36;

    pub fn parse(s: &str) -> Result<JobId, ValidationError> {
        let ok = s.len() == Self::LEN
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            });
        if ok {
            Ok(JobId(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "job id",
                "must be a lowercase UUID like 0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits, used for short display and the job's hostname.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl TryFrom<String> for JobId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        JobId::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

/// One environment variable.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
}

impl EnvVar {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        EnvVar {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl fmt::Debug for EnvVar {
    // Values may be secrets; logs only ever see keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=…", self.key)
    }
}

/// Resource limits of one job. Zero (or empty) means "not limited" for every field except
/// `pids_max`, which the frontend always fills from the configured default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time in percent of one core (100 = one full core).
    pub cpu_percent: u32,
    /// CPUs the job may run on, as a cpuset list (`0-3`, `1,3`).
    pub cpu_cores: String,
    /// Memory in MiB; swap is never granted on top.
    pub memory_mb: u64,
    /// Read and write bandwidth, in bytes per second, on the devices backing the job's storage.
    pub io_bps: u64,
    /// Maximum number of tasks (processes and threads) in the job.
    pub pids_max: u32,
    /// Size of the job's writable space (work directory and `/tmp`) in MiB.
    pub disk_mb: u64,
}

/// Everything about a job that is kept and shown: the validated request without secret values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    /// Names of the secret variables; their values are never stored or returned.
    pub secret_env_keys: Vec<String>,
    pub limits: Limits,
    /// Directory inside the job to start in; empty means the work directory.
    pub work_dir: String,
    pub network: String,
    pub volumes: Vec<String>,
    pub runtime: String,
    /// Wall-clock limit in milliseconds; 0 means none.
    pub timeout_ms: u64,
    /// Paths (relative to the work directory) of the uploaded files, for display.
    pub uploads: Vec<String>,
    /// When a scheduled job is due; 0 for an immediate job.
    pub schedule_ns: u64,
}

/// What the spawner needs to start a job: the spec plus the secret values, which exist only
/// in this message and in the job's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub spec: JobSpec,
    pub secret_env: Vec<EnvVar>,
    /// True when the request carries one fd: a directory of staged uploads to copy into the
    /// job's work directory.
    pub has_upload_dir: bool,
}

/// The states of the Joblet job model, with Joblet's wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    Initializing,
    Scheduled,
    Running,
    Completed,
    Failed,
    Stopped,
    Canceled,
    Timeout,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Initializing,
        JobState::Scheduled,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Stopped,
        JobState::Canceled,
        JobState::Timeout,
    ];

    /// The name Joblet's clients expect in `status` fields.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Scheduled => "SCHEDULED",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Stopped => "STOPPED",
            JobState::Canceled => "CANCELED",
            JobState::Timeout => "TIMEOUT",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Failed
                | JobState::Stopped
                | JobState::Canceled
                | JobState::Timeout
        )
    }

    /// The state machine: which moves are legal. Terminal states never change again, which is
    /// what makes a late or repeated exit report harmless.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Scheduled, Initializing | Canceled | Failed)
                | (Initializing, Running | Failed | Stopped)
                | (Running, Completed | Failed | Stopped | Timeout)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// The command exited by itself with `exit_code`.
    Exited,
    /// A signal killed it (not one we sent).
    Signaled,
    /// The kernel's OOM killer killed it at the memory limit.
    OomKilled,
    /// A client stopped it.
    Stopped,
    /// It ran past its wall-clock timeout.
    Timeout,
    /// It never started: the namespaces, mounts or exec failed.
    LaunchFailed,
    /// Its fate is unknown (the record said running, but no process or exit status was found).
    Lost,
    /// A scheduled job canceled before it started.
    Canceled,
}

impl EndReason {
    /// A stable machine-readable name (`oom_killed`, `timeout`, …), as the frontend sends it
    /// in the `joblet-end-reason` response header of GetJobStatus.
    pub fn code(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Signaled => "signaled",
            EndReason::OomKilled => "oom_killed",
            EndReason::Stopped => "stopped",
            EndReason::Timeout => "timeout",
            EndReason::LaunchFailed => "launch_failed",
            EndReason::Lost => "lost",
            EndReason::Canceled => "canceled",
        }
    }

    /// Words for people.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Signaled => "killed by signal",
            EndReason::OomKilled => "out of memory (OOM killed)",
            EndReason::Stopped => "stopped",
            EndReason::Timeout => "timeout",
            EndReason::LaunchFailed => "launch failed",
            EndReason::Lost => "lost",
            EndReason::Canceled => "canceled before it started",
        }
    }
}

/// How a job ended, as the spawner saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The exit code clients see: the command's own code; 128+N when signal N killed it; 124
    /// on timeout (as `timeout(1)` does); -1 when it never ran or was lost.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub reason: EndReason,
    /// Detail for people, such as the launch error.
    pub message: String,
}

impl JobOutcome {
    /// The terminal state this outcome puts the job in.
    pub fn final_state(&self) -> JobState {
        match self.reason {
            EndReason::Exited if self.exit_code == 0 => JobState::Completed,
            EndReason::Stopped => JobState::Stopped,
            EndReason::Timeout => JobState::Timeout,
            EndReason::Canceled => JobState::Canceled,
            _ => JobState::Failed,
        }
    }

    pub fn launch_failed(message: impl Into<String>) -> Self {
        JobOutcome {
            exit_code: -1,
            signal: None,
            oom_killed: false,
            reason: EndReason::LaunchFailed,
            message: message.into(),
        }
    }

    pub fn lost(message: impl Into<String>) -> Self {
        JobOutcome {
            exit_code: -1,
            signal: None,
            oom_killed: false,
            reason: EndReason::Lost,
            message: message.into(),
        }
    }
}

/// A job as stated stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    pub node_id: String,
    pub created_ns: u64,
    pub started_ns: u64,
    pub ended_ns: u64,
    pub outcome: Option<JobOutcome>,
    /// Secret values of a scheduled job, sealed by the frontend with a key stated never sees.
    /// Empty for jobs that already started: secrets are then dropped.
    #[serde(with = "serde_bytes")]
    pub sealed_secrets: Vec<u8>,
}

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_accepts_only_lowercase_uuids() {
        assert!(JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").is_ok());
        for bad in [
            "",
            "../../etc/passwd",
            "0B7C1A2E-4F3D-4E8A-9C61-2D5E7F9A1B3C",
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3",
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3cc",
            "0b7c1a2e/4f3d-4e8a-9c61-2d5e7f9a1b3c",
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3g",
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn decoding_validates_job_ids() {
        let frame = postcard::to_allocvec(&"../../../etc".to_string()).unwrap();
        assert!(postcard::from_bytes::<JobId>(&frame).is_err());
    }

    #[test]
    fn terminal_states_never_move() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobState::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn outcome_maps_to_state() {
        let mut o = JobOutcome {
            exit_code: 0,
            signal: None,
            oom_killed: false,
            reason: EndReason::Exited,
            message: String::new(),
        };
        assert_eq!(o.final_state(), JobState::Completed);
        o.exit_code = 3;
        assert_eq!(o.final_state(), JobState::Failed);
        o.reason = EndReason::Timeout;
        o.exit_code = 124;
        assert_eq!(o.final_state(), JobState::Timeout);
        o.reason = EndReason::Stopped;
        assert_eq!(o.final_state(), JobState::Stopped);
        o.reason = EndReason::OomKilled;
        assert_eq!(o.final_state(), JobState::Failed);
        o.reason = EndReason::Canceled;
        assert_eq!(o.final_state(), JobState::Canceled);
    }

    #[test]
    fn env_debug_hides_values() {
        let v = EnvVar::new("TOKEN", "hunter2");
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
