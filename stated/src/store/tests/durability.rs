//! Reopening, concurrent writers, and values this version cannot read.

use super::list::list_all;
use super::*;

#[tokio::test]
async fn everything_survives_a_reopen() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    create_half_running(&store, 50).await;
    store
        .write(move_to(
            &id(0),
            JobState::Timeout,
            500,
            Some(exited(124, "t".into())),
        ))
        .await
        .unwrap();
    store.write(WriteOp::Delete(id(0))).await.unwrap();
    let before = list_all(&store).0;
    close(store, writer);

    let (store, writer) = db.open();
    let after = list_all(&store).0;
    assert_eq!(after, before);
    assert_eq!(after.len(), 49);
    assert_eq!(store.get(&id(2)).unwrap().started_ns, 102);
    assert_eq!(store.get(&id(3)).unwrap().state, JobState::Initializing);
    close(store, writer);
}

#[tokio::test]
async fn concurrent_transitions_share_commits_and_are_all_durable() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let mut pending = Vec::new();
    for n in 0..100 {
        pending.push(
            store
                .submit(WriteOp::Create(Box::new(record(n, JobState::Initializing))))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.outcome().await.unwrap();
    }
    let commits_before = store.commit_stats().commits();
    // Four "connections", 25 jobs each, all writing at once.
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4u64 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut writes = Vec::new();
            for n in (c * 25)..(c * 25 + 25) {
                let op = move_to(&id(n), JobState::Running, 1_000 + n, None);
                let store = store.clone();
                writes.push(tokio::spawn(async move { store.write(op).await }));
            }
            for w in writes {
                w.await.unwrap().unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let commits = store.commit_stats().commits() - commits_before;
    assert!(
        commits <= 50,
        "100 concurrent transitions took {commits} commits"
    );
    close(store, writer);

    let (store, writer) = db.open();
    for n in 0..100 {
        let r = store.get(&id(n)).unwrap();
        assert_eq!((r.state, r.started_ns), (JobState::Running, 1_000 + n));
    }
    close(store, writer);
}

/// Puts raw bytes under a job id, as a damaged file or an incompatible version would.
fn plant(path: &Path, key: &str, value: &[u8]) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(JOBS).unwrap().insert(key, value).unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn undecodable_records_are_reported_not_fatal() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    for n in 0..3 {
        store
            .write(WriteOp::Create(Box::new(record(n, JobState::Initializing))))
            .await
            .unwrap();
    }
    close(store, writer);
    plant(&db.path, id(1).as_str(), &[0xff, 0xff, 0xff, 0x01]);
    let mut trailing = postcard::to_allocvec(&record(5, JobState::Initializing)).unwrap();
    trailing.push(0);
    plant(&db.path, id(5).as_str(), &trailing);
    let mirrored = postcard::to_allocvec(&record(6, JobState::Initializing)).unwrap();
    plant(&db.path, id(7).as_str(), &mirrored);

    let (store, writer) = db.open();
    for bad in [1, 5, 7] {
        let err = store.get(&id(bad)).unwrap_err();
        assert!(matches!(err, StoreError::Undecodable { .. }), "{err}");
        assert_eq!(kind(&err), RemoteErrorKind::Internal);
        let err = store
            .write(move_to(&id(bad), JobState::Running, 1, None))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Undecodable { .. }), "{err}");
    }
    let listed: Vec<_> = list_all(&store).0.into_iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![id(0), id(2)]);
    // The store still works around them.
    store
        .write(move_to(&id(2), JobState::Running, 1, None))
        .await
        .unwrap();
    close(store, writer);
}

#[test]
fn refuses_a_directory_owned_by_someone_else_or_a_symlinked_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", state.join("jobs.redb")).unwrap();
    let err = Store::open(&state.join("jobs.redb")).err().unwrap();
    assert!(matches!(err, OpenError::OpenFile { .. }), "{err}");
    assert!(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root")
    );
    if nix::unistd::geteuid().is_root() {
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = Store::open(&theirs.join("jobs.redb")).err().unwrap();
        assert!(
            matches!(err, OpenError::NotOwned { owner: 65534, .. }),
            "{err}"
        );
    }
    let err = Store::open(Path::new("relative/jobs.redb")).err().unwrap();
    assert!(matches!(err, OpenError::BadPath(_)), "{err}");
}
