//! The store on a real redb file in a temporary directory.

mod durability;
mod journal;
mod list;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use joblet_ipc_proto::channel::state::FromState;
use joblet_ipc_proto::codec;
use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, JobRecord, JobSpec, JobState};
use joblet_ipc_proto::{MAX_FRAME_LEN, RemoteError, RemoteErrorKind};
use redb::Database;

use super::*;
use crate::machine::MachineError;

pub(super) fn id(n: u64) -> JobId {
    JobId::parse(&format!("{:08x}-0000-4000-8000-{:012x}", n >> 16, n)).unwrap()
}

pub(super) fn record(n: u64, state: JobState) -> JobRecord {
    JobRecord {
        id: id(n),
        spec: JobSpec {
            command: "/bin/echo".into(),
            args: vec![format!("job {n}")],
            ..JobSpec::default()
        },
        state,
        node_id: "node-1".into(),
        created_ns: 1_000 + n,
        started_ns: 0,
        ended_ns: 0,
        outcome: None,
        sealed_secrets: if state == JobState::Scheduled {
            b"sealed".to_vec()
        } else {
            Vec::new()
        },
    }
}

pub(super) fn exited(code: i32, message: String) -> JobOutcome {
    JobOutcome {
        exit_code: code,
        signal: None,
        oom_killed: false,
        reason: EndReason::Exited,
        message,
    }
}

pub(super) fn move_to(
    job: &JobId,
    to: JobState,
    at_ns: u64,
    outcome: Option<JobOutcome>,
) -> WriteOp {
    WriteOp::Transition {
        job: job.clone(),
        to,
        at_ns,
        outcome,
    }
}

pub(super) struct TestDb {
    _dir: tempfile::TempDir,
    pub(super) path: PathBuf,
}

impl TestDb {
    pub(super) fn new() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("jobs.redb");
        TestDb { _dir: dir, path }
    }

    pub(super) fn open(&self) -> (Store, WriterThread) {
        Store::open(&self.path).unwrap()
    }
}

/// Creates jobs `0..count` and moves the even ones to RUNNING (started at `100 + n`).
pub(super) async fn create_half_running(store: &Store, count: u64) {
    for n in 0..count {
        store
            .write(WriteOp::Create(Box::new(record(n, JobState::Initializing))))
            .await
            .unwrap();
        if n % 2 == 0 {
            store
                .write(move_to(&id(n), JobState::Running, 100 + n, None))
                .await
                .unwrap();
        }
    }
}

/// Closes the store as the daemon does: every handle dropped, then the writer joined.
pub(super) fn close(store: Store, writer: WriterThread) {
    drop(store);
    writer.join().unwrap();
}

pub(super) fn kind(e: &StoreError) -> RemoteErrorKind {
    RemoteError::from(e).kind
}

#[tokio::test]
async fn create_get_and_modes() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let r = record(1, JobState::Initializing);
    store
        .write(WriteOp::Create(Box::new(r.clone())))
        .await
        .unwrap();
    assert_eq!(store.get(&r.id).unwrap(), r);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&db.path), 0o600);
    assert_eq!(mode(db.path.parent().unwrap()), 0o700);

    let again = store
        .write(WriteOp::Create(Box::new(r.clone())))
        .await
        .unwrap_err();
    assert_eq!(again, StoreError::AlreadyExists(r.id.clone()));
    assert_eq!(kind(&again), RemoteErrorKind::AlreadyExists);
    let missing = store.get(&id(2)).unwrap_err();
    assert_eq!(missing, StoreError::NotFound(id(2)));
    assert_eq!(kind(&missing), RemoteErrorKind::NotFound);
    let running = store
        .write(WriteOp::Create(Box::new(record(3, JobState::Running))))
        .await
        .unwrap_err();
    assert_eq!(kind(&running), RemoteErrorKind::InvalidArgument);
    assert_eq!(store.get(&id(3)).unwrap_err(), StoreError::NotFound(id(3)));
    close(store, writer);
}

#[tokio::test]
async fn transitions_follow_the_machine() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let job = id(1);
    store
        .write(WriteOp::Create(Box::new(record(1, JobState::Scheduled))))
        .await
        .unwrap();
    store
        .write(move_to(&job, JobState::Initializing, 0, None))
        .await
        .unwrap();
    assert!(store.get(&job).unwrap().sealed_secrets.is_empty());
    store
        .write(move_to(&job, JobState::Running, 50, None))
        .await
        .unwrap();
    // Illegal: named, refused, record untouched.
    let before = store.get(&job).unwrap();
    let err = store
        .write(move_to(&job, JobState::Scheduled, 60, None))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), RemoteErrorKind::FailedPrecondition);
    assert!(
        err.to_string().contains("from RUNNING to SCHEDULED"),
        "{err}"
    );
    assert_eq!(store.get(&job).unwrap(), before);
    // Terminal without outcome: refused.
    let err = store
        .write(move_to(&job, JobState::Completed, 70, None))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Rule(MachineError::OutcomeMissing {
            to: JobState::Completed
        })
    );
    store
        .write(move_to(
            &job,
            JobState::Completed,
            90,
            Some(exited(0, String::new())),
        ))
        .await
        .unwrap();
    let done = store.get(&job).unwrap();
    assert_eq!(
        (done.state, done.started_ns, done.ended_ns),
        (JobState::Completed, 50, 90)
    );
    // Repeating the exit report changes nothing.
    store
        .write(move_to(
            &job,
            JobState::Completed,
            999,
            Some(exited(1, "late".into())),
        ))
        .await
        .unwrap();
    assert_eq!(store.get(&job).unwrap(), done);
    let err = store
        .write(move_to(&id(9), JobState::Running, 1, None))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound(id(9)));
    close(store, writer);
}

#[tokio::test]
async fn writes_of_one_batch_see_each_other_in_order() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let job = id(1);
    // Submitted back to back without waiting: they land in one transaction, in order.
    let pending = vec![
        store
            .submit(WriteOp::Create(Box::new(record(1, JobState::Initializing))))
            .await
            .unwrap(),
        store
            .submit(move_to(&job, JobState::Running, 10, None))
            .await
            .unwrap(),
        store
            .submit(move_to(
                &job,
                JobState::Failed,
                20,
                Some(exited(2, String::new())),
            ))
            .await
            .unwrap(),
        store.submit(WriteOp::Delete(job.clone())).await.unwrap(),
        store
            .submit(WriteOp::Create(Box::new(record(1, JobState::Initializing))))
            .await
            .unwrap(),
    ];
    for p in pending {
        p.outcome().await.unwrap();
    }
    assert_eq!(store.get(&job).unwrap(), record(1, JobState::Initializing));
    close(store, writer);
}

#[tokio::test]
async fn delete_only_finished_jobs() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let job = id(1);
    store
        .write(WriteOp::Create(Box::new(record(1, JobState::Initializing))))
        .await
        .unwrap();
    let err = store.write(WriteOp::Delete(job.clone())).await.unwrap_err();
    assert_eq!(kind(&err), RemoteErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("INITIALIZING"), "{err}");
    store
        .write(move_to(
            &job,
            JobState::Stopped,
            5,
            Some(exited(-1, String::new())),
        ))
        .await
        .unwrap();
    store.write(WriteOp::Delete(job.clone())).await.unwrap();
    assert_eq!(
        store.get(&job).unwrap_err(),
        StoreError::NotFound(job.clone())
    );
    let err = store.write(WriteOp::Delete(job.clone())).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound(job));
    close(store, writer);
}

#[tokio::test]
async fn resolve_prefixes() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let ids = [
        "aaaa0000-0000-4000-8000-000000000001",
        "aaaa0000-0000-4000-8000-000000000002",
        "aaab0000-0000-4000-8000-000000000003",
        "b0000000-0000-4000-8000-000000000004",
    ];
    for (n, s) in ids.iter().enumerate() {
        let mut r = record(n as u64, JobState::Initializing);
        r.id = JobId::parse(s).unwrap();
        store.write(WriteOp::Create(Box::new(r))).await.unwrap();
    }
    assert_eq!(store.resolve("b").unwrap().as_str(), ids[3]);
    assert_eq!(store.resolve("aaab").unwrap().as_str(), ids[2]);
    assert_eq!(store.resolve(ids[1]).unwrap().as_str(), ids[1]);
    let err = store.resolve("aaaa").unwrap_err();
    assert_eq!(kind(&err), RemoteErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains("ambiguous prefix, 2 jobs match"),
        "{err}"
    );
    assert!(
        store
            .resolve("a")
            .unwrap_err()
            .to_string()
            .contains("3 jobs match")
    );
    let err = store.resolve("c").unwrap_err();
    assert_eq!(kind(&err), RemoteErrorKind::NotFound);
    for bad in ["", "AAAA", "../x", "aaaa0000-0000-4000-8000-0000000000011"] {
        let err = store.resolve(bad).unwrap_err();
        assert_eq!(err, StoreError::BadPrefix(bad.into()), "{bad:?}");
        assert_eq!(kind(&err), RemoteErrorKind::InvalidArgument);
    }
    close(store, writer);
}
