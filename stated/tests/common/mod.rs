//! A real stated server on a temporary socket and database, and small client helpers.

#![allow(dead_code)]

use std::path::PathBuf;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::job::{EndReason, JobId, JobOutcome, JobRecord, JobSpec, JobState};
use joblet_ipc_proto::tokio::{Conn, Listener, connect};
use joblet_stated::server;
use joblet_stated::store::{Store, WriterThread};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn me() -> u32 {
    nix::unistd::getuid().as_raw()
}

pub fn id(n: u64) -> JobId {
    JobId::parse(&format!("{:08x}-0000-4000-8000-{:012x}", n >> 16, n)).unwrap()
}

pub fn record(n: u64) -> JobRecord {
    JobRecord {
        id: id(n),
        spec: JobSpec {
            command: "/bin/echo".into(),
            args: vec![format!("job {n}")],
            ..JobSpec::default()
        },
        state: JobState::Initializing,
        node_id: "node-1".into(),
        created_ns: 1_000 + n,
        started_ns: 0,
        ended_ns: 0,
        outcome: None,
        sealed_secrets: Vec::new(),
    }
}

pub fn exited(code: i32) -> JobOutcome {
    JobOutcome {
        exit_code: code,
        signal: None,
        oom_killed: false,
        reason: EndReason::Exited,
        message: String::new(),
    }
}

pub fn create(n: u64) -> ToState {
    ToState::Create { record: record(n) }
}

pub fn move_to(n: u64, to: JobState, at_ns: u64, outcome: Option<JobOutcome>) -> ToState {
    ToState::Transition {
        job: id(n),
        to,
        at_ns,
        outcome,
    }
}

/// A temporary directory holding the socket and the database; survives server restarts.
pub struct Place {
    pub dir: tempfile::TempDir,
}

impl Place {
    pub fn new() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("stated.sock")
    }
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state").join("jobs.redb")
    }
}

pub struct TestServer {
    store: Option<Store>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    writer: WriterThread,
}

impl TestServer {
    /// Starts the real server, allowing `allowed_uid` on the channel.
    pub fn start(place: &Place, allowed_uid: u32) -> TestServer {
        let _ = std::fs::remove_file(place.socket());
        let (store, writer) = Store::open(&place.db()).unwrap();
        let listener = Listener::bind(place.socket(), Channel::State, vec![allowed_uid]).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, store.clone(), async {
            let _ = stopped.await;
        }));
        TestServer {
            store: Some(store),
            stop: Some(stop),
            task,
            writer,
        }
    }

    /// Durable commits so far.
    pub fn commits(&self) -> u64 {
        self.store
            .as_ref()
            .map_or(0, |s| s.commit_stats().commits())
    }

    /// Stops serving and closes the database, as the daemon does on SIGTERM.
    pub async fn stop(mut self) {
        self.store = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
        tokio::task::spawn_blocking(move || self.writer.join().unwrap())
            .await
            .unwrap();
    }
}

pub async fn client(place: &Place) -> Conn {
    connect(place.socket(), Channel::State).await.unwrap()
}

/// One request, one reply.
pub async fn call(conn: &mut Conn, request: ToState) -> FromState {
    conn.send(&request, &[]).await.unwrap();
    conn.recv::<FromState>().await.unwrap().msg
}

pub fn assert_done(reply: FromState) {
    assert!(
        matches!(reply, FromState::Done),
        "expected Done, got {reply:?}"
    );
}
