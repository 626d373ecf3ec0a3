//! The job table: what the spawner holds for each job it started or adopted, and the pure
//! functions over it (paging for ListJobs).

use std::{collections::BTreeMap, os::fd::OwnedFd};

use joblet_ipc_proto::MAX_FRAME_LEN;
use joblet_ipc_proto::channel::spawner::SpawnedJob;
use joblet_ipc_proto::job::{JobId, JobOutcome};

use crate::cgroup::JobCgroup;
use crate::clock;
use crate::record::{JobDir, JobFile, StartedFile};

/// A client connection id.
pub type ClientId = u64;

/// A launch (namespaces, mounts, uploads, exec) that takes longer than this is abandoned.
pub const LAUNCH_TIMEOUT_MS: u64 = 60_000;

/// Where a job is in its life, as the spawner sees it.
#[derive(Debug)]
pub enum Phase {
    /// The shim is held until ReleaseJob, or released and the job's `started` or `exit`
    /// record is awaited.
    Launching {
        /// Who asked, to answer once the command was exec'd (None after a restart).
        reply_to: Option<(ClientId, u64)>,
        /// Boot-time ns after which the launch is abandoned.
        deadline: u64,
    },
    Running,
    /// Over; the exit event is repeated until acknowledged.
    Exited {
        outcome: JobOutcome,
        ended_ns: u64,
    },
}

/// The hand-over of the output pipes to persistd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Never to be attached (the job never started).
    Never,
    /// To be sent (again) on the next ready connection.
    Wanted,
    /// Attach sent on the current connection; the Watch of the running job's cgroup to follow.
    WatchWanted,
    /// Sent on the current connection; waiting for Drained.
    Sent,
    /// persistd stored everything.
    Drained,
}

/// The shim as the spawner holds it (its pid is in the job's record, `JobFile::shim`).
#[derive(Debug)]
pub struct ShimLink {
    pub pidfd: OwnedFd,
    /// Read end of its status pipe (None once it reported end of file).
    pub status: Option<OwnedFd>,
    /// Forked by this spawner (so ours to reap), rather than adopted after a restart.
    pub child: bool,
}

pub struct Job {
    pub id: JobId,
    pub dir: JobDir,
    /// In-memory copy of the on-disk record.
    pub file: JobFile,
    pub phase: Phase,
    pub shim: Option<ShimLink>,
    pub started: Option<StartedFile>,
    /// pidfd of the job's PID 1 (from the shim).
    pub init_pidfd: Option<OwnedFd>,
    pub cgroup: Option<JobCgroup>,
    /// v1 only: the OOM eventfd (v2 kills the whole job by itself).
    pub oom_watch: Option<OwnedFd>,
    /// Our copies of the stdout and stderr read ends.
    pub pipes: Option<(OwnedFd, OwnedFd)>,
    /// The shim's release pipe, held until ReleaseJob (or a stop lets the job go unstarted).
    pub go: Option<OwnedFd>,
    pub attach: Attach,
    /// Set when the kill after a stop's grace period was done.
    pub killed: bool,
    /// Why a launch was abandoned, for the outcome message.
    pub launch_abandoned: Option<String>,
    /// The frontend acknowledged the exit event.
    pub acked: bool,
}

impl Job {
    /// A job whose launch is under way (or, after a restart, in an unknown state), to be
    /// answered to `reply_to` once its command runs.
    pub fn new(
        id: JobId,
        dir: JobDir,
        file: JobFile,
        cgroup: Option<JobCgroup>,
        reply_to: Option<(ClientId, u64)>,
    ) -> Job {
        let deadline = clock::boot_deadline(LAUNCH_TIMEOUT_MS);
        Job {
            id,
            dir,
            file,
            phase: Phase::Launching { reply_to, deadline },
            shim: None,
            started: None,
            init_pidfd: None,
            cgroup,
            oom_watch: None,
            pipes: None,
            go: None,
            attach: Attach::Never,
            killed: false,
            launch_abandoned: None,
            acked: false,
        }
    }

    pub fn exited(&self) -> Option<(&JobOutcome, u64)> {
        match &self.phase {
            Phase::Exited { outcome, ended_ns } => Some((outcome, *ended_ns)),
            _ => None,
        }
    }

    pub fn summary(&self) -> SpawnedJob {
        SpawnedJob {
            job: self.id.clone(),
            pid: self
                .started
                .map_or(0, |s| u32::try_from(s.job_pid).unwrap_or(0)),
            started_ns: self.started.map_or(0, |s| s.started_ns),
            exited: self.exited().map(|(o, e)| (o.clone(), e)),
        }
    }
}

/// Most jobs in one ListJobs page.
pub const MAX_PAGE: usize = 256;
/// Room kept in a frame for the reply's own fields.
const FRAME_MARGIN: usize = 1024;

/// One page of `jobs` after `after` (exclusive), in id order, small enough for one frame.
/// Returns the page and whether more follow.
pub fn page<'a>(
    jobs: impl Iterator<Item = (&'a JobId, SpawnedJob)>,
    after: Option<&JobId>,
) -> (Vec<SpawnedJob>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0;
    for (_, summary) in jobs.filter(|(id, _)| after.is_none_or(|a| *id > a)) {
        let size = postcard::to_allocvec(&summary).map_or(MAX_FRAME_LEN, |v| v.len());
        if out.len() == MAX_PAGE || bytes + size > MAX_FRAME_LEN - FRAME_MARGIN {
            return (out, true);
        }
        bytes += size;
        out.push(summary);
    }
    (out, false)
}

/// The page over the live table.
pub fn list(jobs: &BTreeMap<JobId, Job>, after: Option<&JobId>) -> (Vec<SpawnedJob>, bool) {
    page(jobs.iter().map(|(id, j)| (id, j.summary())), after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> JobId {
        JobId::parse(&format!("{n:08x}-0000-4000-8000-000000000000")).unwrap()
    }

    fn summary(n: u32, msg_len: usize) -> (JobId, SpawnedJob) {
        let outcome = JobOutcome::lost("x".repeat(msg_len));
        (
            id(n),
            SpawnedJob {
                job: id(n),
                pid: n,
                started_ns: 1,
                exited: Some((outcome, 2)),
            },
        )
    }

    #[test]
    fn pages_follow_ids_and_end() {
        let all: Vec<_> = (0..600).map(|n| summary(n, 0)).collect();
        let (p1, more) = page(all.iter().map(|(i, s)| (i, s.clone())), None);
        assert_eq!((p1.len(), more), (MAX_PAGE, true));
        let last = p1.last().unwrap().job.clone();
        let (p2, _) = page(all.iter().map(|(i, s)| (i, s.clone())), Some(&last));
        assert_eq!(p2[0].job, id(MAX_PAGE as u32));
        let (p3, more) = page(all.iter().map(|(i, s)| (i, s.clone())), Some(&id(590)));
        assert_eq!((p3.len(), more), (9, false));
    }

    #[test]
    fn pages_fit_a_frame() {
        let all: Vec<_> = (0..200).map(|n| summary(n, 2000)).collect();
        let (p, more) = page(all.iter().map(|(i, s)| (i, s.clone())), None);
        assert!(more);
        let reply = joblet_ipc_proto::channel::spawner::FromSpawner::Reply {
            id: u64::MAX,
            reply: joblet_ipc_proto::channel::spawner::SpawnerReply::Jobs { jobs: p, more },
        };
        let mut buf = Vec::new();
        joblet_ipc_proto::codec::encode(&reply, &mut buf).unwrap();
    }
}
