//! Shared pieces of the integration tests: the real server on temp sockets, a "job" writing
//! numbered lines into real pipes, and clients speaking the real protocol as the spawner and
//! the frontend do.

#![allow(dead_code)]

pub mod cgroup;

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogRange, MetricSample, ToPersistLogs};
use joblet_ipc_proto::channel::output::{FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::job::{JobId, Stream};
use joblet_ipc_proto::tokio::{Conn, Listener, connect};
use joblet_persistd::registry::Registry;
use joblet_persistd::server::{self, Listeners, Options};
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(30);

/// The sampling interval of test servers: short, so tests see several samples quickly.
pub const TEST_INTERVAL: Duration = Duration::from_millis(200);

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
        Self::start_sampling_every(data_dir, sock_dir, TEST_INTERVAL).await
    }

    pub async fn start_sampling_every(
        data_dir: &Path,
        sock_dir: &Path,
        metrics_interval: Duration,
    ) -> TestServer {
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
                let options = Options { metrics_interval };
                server::serve(registry, listeners, options, async move {
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

/// The pipes of a job that runs until the returned write ends are dropped.
pub fn open_job() -> (JobPipes, (std::io::PipeWriter, std::io::PipeWriter)) {
    let (out_r, out_w) = std::io::pipe().unwrap();
    let (err_r, err_w) = std::io::pipe().unwrap();
    let pipes = JobPipes {
        stdout: out_r.into(),
        stderr: err_r.into(),
    };
    (pipes, (out_w, err_w))
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

/// One range of a `Read`, with its bytes read from the files the read handed over, as the
/// frontend reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunks {
    pub first_seq: u64,
    pub last_seq: u64,
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// What one `Read` returned.
#[derive(Debug)]
pub struct ReadResult {
    pub chunks: Vec<ReadChunks>,
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
    let mut files: Option<[std::fs::File; 2]> = None;
    loop {
        let received = tokio::time::timeout(WAIT, conn.recv::<FromPersistLogs>())
            .await
            .expect("log frame in time")
            .expect("log frame");
        match received.msg {
            FromPersistLogs::Files => {
                assert!(files.is_none(), "the files come once per read");
                let [out, err] = <[OwnedFd; 2]>::try_from(received.fds).expect("two fds");
                files = Some([out.into(), err.into()]);
            }
            FromPersistLogs::Range(r) => {
                let files = files.as_ref().expect("the files come before any range");
                chunks.push(read_range(files, &r));
            }
            FromPersistLogs::End { next_seq, complete } => {
                assert!(files.is_some(), "a read of a stored log sends the files");
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

/// Reads a range from the read-only files, as the frontend does; they must not be writable.
pub fn read_range(files: &[std::fs::File; 2], r: &LogRange) -> ReadChunks {
    use std::os::unix::fs::FileExt;
    let file = &files[joblet_persistd::store::stream_index(r.stream)];
    assert!(
        file.write_at(b"x", 0).is_err(),
        "a data file handed out writable"
    );
    let mut data = vec![0u8; r.len as usize];
    file.read_exact_at(&mut data, r.offset)
        .expect("the range is inside its file");
    ReadChunks {
        first_seq: r.first_seq,
        last_seq: r.last_seq,
        stream: r.stream,
        data,
    }
}

/// The number of chunks `chunks` cover (they start at their first's `first_seq`).
pub fn seq_count(chunks: &[ReadChunks]) -> u64 {
    match (chunks.first(), chunks.last()) {
        (Some(a), Some(b)) => b.last_seq + 1 - a.first_seq,
        _ => 0,
    }
}

/// One request on a fresh logs connection, answered by one frame.
pub async fn request(path: &Path, req: ToPersistLogs) -> FromPersistLogs {
    let mut conn = connect(path, Channel::Logs).await.expect("connect logs");
    conn.send(&req, &[]).await.expect("send");
    conn.recv::<FromPersistLogs>().await.expect("reply").msg
}

/// Checks that ranges cover chunks `from..` without gap or overlap, that each stream carries
/// only its own lines, and returns the lines of each stream.
pub fn check_chunks(chunks: &[ReadChunks], from: u64) -> (Vec<String>, Vec<String>) {
    let mut next = from;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.first_seq, next, "sequence gap or duplicate at range {i}");
        assert!(c.last_seq >= c.first_seq, "range {i} ends before it starts");
        assert!(!c.data.is_empty(), "empty range {i}");
        next = c.last_seq + 1;
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
pub fn assert_all_lines(chunks: &[ReadChunks], lines: usize) {
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
pub async fn stored(path: &Path, job: &JobId) -> Vec<ReadChunks> {
    read(path, job, 0, false).await.chunks
}

/// Acting as the spawner: hands over the cgroup directories of a job for sampling.
pub async fn watch_on(conn: &Conn, job: &JobId, cgroup: &cgroup::TestCgroup) {
    let (dirs, fds) = cgroup.open_dirs();
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let msg = ToPersistOutput::Watch {
        job: job.clone(),
        dirs,
    };
    conn.send(&msg, &borrowed).await.expect("send Watch");
}

/// What one `Metrics` request returned.
#[derive(Debug)]
pub struct MetricsResult {
    pub samples: Vec<MetricSample>,
    pub next_seq: u64,
    pub complete: bool,
}

pub fn metrics_request(
    job: &JobId,
    from_ns: u64,
    to_ns: u64,
    limit: u32,
    follow: bool,
) -> ToPersistLogs {
    ToPersistLogs::Metrics {
        job: job.clone(),
        from_ns,
        to_ns,
        limit,
        follow,
    }
}

/// Acting as the frontend: one `Metrics` request on a fresh connection, collected until
/// `End`; an `Error` reply is returned as such.
pub async fn metrics(path: &Path, req: ToPersistLogs) -> Result<MetricsResult, FromPersistLogs> {
    let mut conn = connect(path, Channel::Logs).await.expect("connect logs");
    conn.send(&req, &[]).await.expect("send Metrics");
    let mut samples = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, conn.recv::<FromPersistLogs>())
            .await
            .expect("metric frame in time")
            .expect("metric frame")
            .msg;
        match msg {
            FromPersistLogs::Metric(s) => samples.push(s),
            FromPersistLogs::End { next_seq, complete } => {
                return Ok(MetricsResult {
                    samples,
                    next_seq,
                    complete,
                });
            }
            other => return Err(other),
        }
    }
}

/// A `Metrics` follower running in the background; `samples` fills as they arrive.
pub struct MetricFollower {
    pub samples: Arc<Mutex<Vec<MetricSample>>>,
    /// `(next_seq, complete)` of the `End`, or `None` if the connection broke first.
    pub task: tokio::task::JoinHandle<Option<(u64, bool)>>,
}

impl MetricFollower {
    pub fn start(path: &Path, job: &JobId) -> MetricFollower {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (path, req) = (path.to_owned(), metrics_request(job, 0, 0, 0, true));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                let mut conn = connect(&path, Channel::Logs).await.ok()?;
                conn.send(&req, &[]).await.ok()?;
                loop {
                    match conn.recv::<FromPersistLogs>().await.ok()?.msg {
                        FromPersistLogs::Metric(s) => samples.lock().unwrap().push(s),
                        FromPersistLogs::End { next_seq, complete } => {
                            return Some((next_seq, complete));
                        }
                        other => panic!("unexpected reply to Metrics: {other:?}"),
                    }
                }
            }
        });
        MetricFollower { samples, task }
    }

    pub fn snapshot(&self) -> Vec<MetricSample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits until the samples received satisfy `cond`; returns them.
    pub async fn until(
        &self,
        what: &str,
        mut cond: impl FnMut(&[MetricSample]) -> bool,
    ) -> Vec<MetricSample> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.snapshot();
            if cond(&now) {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last samples: {:#?}",
                &now[now.len().saturating_sub(3)..]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
