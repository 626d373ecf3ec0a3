//! The journal: acknowledged writes survive a crash of the writer's process, and a full
//! journal becomes a checkpoint.

use std::process::Command;

use super::*;

const CRASH_DB: &str = "JOBLET_STATED_TEST_CRASH_DB";
const WRITES: u64 = 40;

/// Not a test on its own: the child of `acknowledged_writes_survive_a_crash`. It writes, and
/// once every write is acknowledged it kills itself: no destructor runs, no database closes.
#[tokio::test]
async fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let (store, _writer) = Store::open(Path::new(&path)).unwrap();
    create_half_running(&store, WRITES).await;
    store.write(WriteOp::Delete(id(0))).await.unwrap_err();
    let me = nix::unistd::getpid();
    nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn acknowledged_writes_survive_a_crash() {
    let db = TestDb::new();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::journal::crash_child",
            "--nocapture",
        ])
        .env(CRASH_DB, &db.path)
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the writing child failed: {status}"
    );

    let (store, writer) = db.open();
    let records = list::list_all(&store).0;
    assert_eq!(
        records.len() as u64,
        WRITES,
        "every acknowledged create is there"
    );
    for r in records {
        let n = u64::from_str_radix(&r.id.as_str()[24..], 16).unwrap();
        let expected = if n % 2 == 0 {
            (JobState::Running, 100 + n)
        } else {
            (JobState::Initializing, 0)
        };
        assert_eq!((r.state, r.started_ns), expected, "job {n}");
    }
    close(store, writer);
    // The start checkpointed what it replayed, and the clean stop left nothing to replay.
    let (store, writer) = db.open();
    assert_eq!(list::list_all(&store).0.len() as u64, WRITES);
    close(store, writer);
}

#[tokio::test]
async fn a_full_journal_becomes_a_checkpoint_and_nothing_is_lost() {
    let db = TestDb::new();
    let (store, writer) = db.open();
    let journal = super::super::journal::path_for(&db.path);
    let meta = std::fs::metadata(&journal).unwrap();
    assert_eq!(
        meta.len(),
        super::super::journal::CAPACITY,
        "written at full size"
    );
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // Records of about 4 KB: the 1 MiB journal fills after about 250 writes.
    let big = |n: u64| {
        let mut r = record(n, JobState::Initializing);
        r.spec.args.push("x".repeat(4000));
        r
    };
    for n in 0..600 {
        store
            .write(WriteOp::Create(Box::new(big(n))))
            .await
            .unwrap();
    }
    assert!(
        store.commit_stats().checkpoints() >= 2,
        "{} checkpoints",
        store.commit_stats().checkpoints()
    );
    close(store, writer);
    let (store, writer) = db.open();
    let records = list::list_all(&store).0;
    assert_eq!(records.len(), 600);
    assert_eq!(store.get(&id(599)).unwrap(), big(599));
    close(store, writer);
}

#[test]
fn refuses_a_journal_that_is_a_symlink_or_too_large() {
    let db = TestDb::new();
    std::fs::create_dir_all(db.path.parent().unwrap()).unwrap();
    let journal = super::super::journal::path_for(&db.path);
    std::os::unix::fs::symlink("/etc/passwd", &journal).unwrap();
    let err = Store::open(&db.path).err().unwrap();
    assert!(matches!(err, OpenError::OpenFile { .. }), "{err}");
    std::fs::remove_file(&journal).unwrap();
    std::fs::write(&journal, vec![0u8; 17 << 20]).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Store::open(&db.path).err().unwrap();
    assert!(matches!(err, OpenError::JournalFrame { .. }), "{err}");
    assert!(err.to_string().contains("larger than"), "{err}");
}

/// A tmpfs of our own under a temporary directory, unmounted however the test ends.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mount tmpfs: {mounted}");
        SmallDisk { dir }
    }

    fn grow(&self, size: &str) {
        let grown = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(grown.success(), "remount: {grown}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// redb latches an I/O error until the database is reopened, so the checkpoint after the
/// failed batch fails too and the writer stops. A write answered with a storage error was not
/// applied; the one answered "writer stopped" may have been (its frame may be in the journal),
/// as any write in flight when a daemon dies.
#[tokio::test]
async fn a_full_disk_stops_the_writer_and_keeps_every_acknowledged_write() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = SmallDisk::mount("3m");
    let path = disk.dir.path().join("state").join("jobs.redb");
    let (store, writer) = Store::open(&path).unwrap();
    let big = |n: u64| {
        let mut r = record(n, JobState::Initializing);
        r.spec.args.push("x".repeat(8000));
        r
    };
    let mut acknowledged = 0;
    let failure = loop {
        assert!(acknowledged < 2_000, "3 MiB never filled up");
        match store
            .write(WriteOp::Create(Box::new(big(acknowledged))))
            .await
        {
            Ok(()) => acknowledged += 1,
            Err(e) => break e,
        }
    };
    assert!(acknowledged > 0);
    let unanswered = match failure {
        StoreError::WriterStopped => 1,
        StoreError::Storage { .. } => 0,
        other => panic!("a full disk must fail as storage, not as {other}"),
    };
    let after = store.write(WriteOp::Delete(id(0))).await.unwrap_err();
    assert_eq!(after, StoreError::WriterStopped, "the writer stopped");
    drop(store);
    writer.join().unwrap();

    disk.grow("64m");
    let (store, writer) = Store::open(&path).unwrap();
    let ids: Vec<_> = list::list_all(&store).0.into_iter().map(|r| r.id).collect();
    let expected: Vec<_> = (0..acknowledged).map(id).collect();
    assert_eq!(ids[..expected.len()], expected, "every acknowledged create");
    assert!(ids.len() - expected.len() <= unanswered, "{ids:?}");
    store
        .write(WriteOp::Create(Box::new(big(acknowledged + 1))))
        .await
        .unwrap();
    close(store, writer);
}
