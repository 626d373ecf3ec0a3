//! Shared pieces of the integration tests: the real server on temp sockets, a "job" writing
//! numbered lines into real pipes, and clients speaking the real protocol as the spawner and
//! the frontend do.

#![allow(dead_code)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogChunk, ToPersistLogs};
use joblet_ipc_proto::channel::output::{FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::job::{JobId, Stream};
use joblet_ipc_proto::tokio::{Conn, Listener, connect};
use joblet_persistd::registry::Registry;
use joblet_persistd::server::{self, Listeners};
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn me() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// A fresh job id per call, so parallel tests never share one.
pub fn new_job() -> JobId {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    JobId::parse(&format!("{pid:08x}-0000-4000-8000-{n:012x}")).unwrap()
}

/// The server in its own thread and runtime. `stop` drops the runtime, which cancels every
/// task wherever it is waiting: the in-process equivalent of killing the daemon.
pub struct TestServer {
    pub output: PathBuf,
    pub logs: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(data_dir: &Path, sock_dir: &Path) -> TestServer {
        let output = sock_dir.join("persistd-output.sock");
        let logs = sock_dir.join("persistd.sock");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&logs);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let data = data_dir.to_owned();
        let (o, l) = (output.clone(), logs.clone());
        let thread = std::thread::spawn(move || {
            let registry = Arc::new(Registry::open(&data).expect("open registry"));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listeners = Listeners {
                    output: Listener::bind(&o, Channel::Output, vec![me()]).expect("bind output"),
                    logs: Listener::bind(&l, Channel::Logs, vec![me()]).expect("bind logs"),
                };
                let _ = ready_tx.send(());
                server::serve(registry, listeners, async move {
                    let _ = stop_rx.await;
                })
                .await;
            });
            drop(rt);
        });
        ready_rx.await.expect("server started");
        TestServer {
            output,
            logs,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub async fn stop(mut self) {
        self.halt();
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join().expect("server thread"))
                .await
                .unwrap();
        }
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A job's output pipes. The test keeps the read ends (as the spawner does) and the "job"
/// thread owns the write ends.
pub struct JobPipes {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts a job that writes `lines` numbered lines, every `every`; line i goes to stderr
/// when `i % 5 == 4`, else stdout. Returns the read ends and the writer thread.
pub fn start_job(lines: usize, every: Duration) -> (JobPipes, std::thread::JoinHandle<()>) {
    let (out_r, mut out_w) = std::io::pipe().unwrap();
    let (err_r, mut err_w) = std::io::pipe().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..lines {
            if i % 5 == 4 {
                err_w.write_all(format!("err-{i}\n").as_bytes()).unwrap();
            } else {
                out_w.write_all(format!("out-{i}\n").as_bytes()).unwrap();
            }
            if !every.is_zero() {
                std::thread::sleep(every);
            }
        }
    });
    let pipes = JobPipes {
        stdout: out_r.into(),
        stderr: err_r.into(),
    };
    (pipes, writer)
}

/// The lines `start_job` writes to each stream, in order.
pub fn expected_lines(lines: usize) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    for i in 0..lines {
        if i % 5 == 4 {
            err.push(format!("err-{i}"));
        } else {
            out.push(format!("out-{i}"));
        }
    }
    (out, err)
}

/// Acting as the spawner: connects to the output channel and attaches the pipes.
pub async fn attach(path: &Path, job: &JobId, pipes: &JobPipes) -> (Conn, FromPersistOutput) {
    let mut conn = connect(path, Channel::Output)
        .await
        .expect("connect output");
    let reply = attach_on(&mut conn, job, pipes).await;
    (conn, reply)
}

pub async fn attach_on(conn: &mut Conn, job: &JobId, pipes: &JobPipes) -> FromPersistOutput {
    let msg = ToPersistOutput::Attach {
        job: job.clone(),
        started_ns: 1,
    };
    conn.send(&msg, &[pipes.stdout.as_fd(), pipes.stderr.as_fd()])
        .await
        .expect("send Attach");
    recv_output(conn).await
}

pub async fn recv_output(conn: &mut Conn) -> FromPersistOutput {
    tokio::time::timeout(WAIT, conn.recv::<FromPersistOutput>())
        .await
        .expect("output reply in time")
        .expect("output reply")
        .msg
}

/// What one `Read` returned.
#[derive(Debug)]
pub struct ReadResult {
    pub chunks: Vec<LogChunk>,
    pub next_seq: u64,
    pub complete: bool,
}

/// Acting as the frontend: one `Read` on a fresh connection, collected until `End`.
pub async fn read(path: &Path, job: &JobId, from_seq: u64, follow: bool) -> ReadResult {
    let mut conn = connect(path, Channel::Logs).await.expect("connect logs");
    read_on(&mut conn, job, from_seq, follow).await
}

pub async fn read_on(conn: &mut Conn, job: &JobId, from_seq: u64, follow: bool) -> ReadResult {
    let req = ToPersistLogs::Read {
        job: job.clone(),
        from_seq,
        follow,
    };
    conn.send(&req, &[]).await.expect("send Read");
    let mut chunks = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, conn.recv::<FromPersistLogs>())
            .await
            .expect("log frame in time")
            .expect("log frame")
            .msg;
        match msg {
            FromPersistLogs::Chunk(c) => chunks.push(c),
            FromPersistLogs::End { next_seq, complete } => {
                return ReadResult {
                    chunks,
                    next_seq,
                    complete,
                };
            }
            other => panic!("unexpected reply to Read: {other:?}"),
        }
    }
}

/// One request on a fresh logs connection, answered by one frame.
pub async fn request(path: &Path, req: ToPersistLogs) -> FromPersistLogs {
    let mut conn = connect(path, Channel::Logs).await.expect("connect logs");
    conn.send(&req, &[]).await.expect("send");
    conn.recv::<FromPersistLogs>().await.expect("reply").msg
}

/// Checks that chunks are numbered `from..` without gap, that each stream carries only its
/// own lines, and returns the lines of each stream.
pub fn check_chunks(chunks: &[LogChunk], from: u64) -> (Vec<String>, Vec<String>) {
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.seq, from + i as u64, "sequence gap or duplicate at {i}");
        assert!(!c.data.is_empty(), "empty chunk {}", c.seq);
    }
    let lines_of = |stream: Stream| -> Vec<String> {
        let bytes: Vec<u8> = chunks
            .iter()
            .filter(|c| c.stream == stream)
            .flat_map(|c| c.data.iter().copied())
            .collect();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let out = lines_of(Stream::Stdout);
    let err = lines_of(Stream::Stderr);
    assert!(
        out.iter().all(|l| l.starts_with("out-")),
        "stderr line tagged stdout"
    );
    assert!(
        err.iter().all(|l| l.starts_with("err-")),
        "stdout line tagged stderr"
    );
    (out, err)
}

/// Asserts each stream holds exactly the expected lines, once each, in order.
pub fn assert_all_lines(chunks: &[LogChunk], lines: usize) {
    let (out, err) = check_chunks(chunks, 0);
    let (want_out, want_err) = expected_lines(lines);
    assert_lines_eq(&out, &want_out, "stdout");
    assert_lines_eq(&err, &want_err, "stderr");
}

fn assert_lines_eq(got: &[String], want: &[String], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(g, w)| g != w);
        panic!(
            "{what}: got {} lines, want {}; first difference at {first_diff:?}",
            got.len(),
            want.len()
        );
    }
}

/// Waits until `cond` holds, polling.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stored chunks of a job right now (a non-following read).
pub async fn stored(path: &Path, job: &JobId) -> Vec<LogChunk> {
    read(path, job, 0, false).await.chunks
}
