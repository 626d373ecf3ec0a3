//! Job metrics from real cgroups: a child process in a cgroup of our own (v1 on the host,
//! v2 in the guest), its directories handed to the real server with `Watch` on a real output
//! connection, and samples read with `Metrics` on the logs channel.
//!
//! The "job" is this test binary run again as `metrics_child_job`, driven through its stdin
//! (`spin`, `rest`, `alloc MB`, `free`, `threads N`, `join`, `exit`), so each phase is
//! under the test's control and needs nothing installed.

mod common;

use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::cgroup::TestCgroup;
use common::*;
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, MetricSample, ToPersistLogs};
use joblet_ipc_proto::channel::output::FromPersistOutput;

const CHILD_ENV: &str = "PERSISTD_METRICS_CHILD";
const MIB: u64 = 1 << 20;

#[test]
#[ignore = "the busy job of the metric tests; they run it, it does nothing alone"]
fn metrics_child_job() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_job();
    }
}

fn child_job() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let spinning = Arc::new(AtomicBool::new(false));
    let mut spinner = None;
    let mut sleepers = Vec::new();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let mut release = Some(release);
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["spin"] => {
                spinning.store(true, Ordering::SeqCst);
                let flag = spinning.clone();
                spinner = Some(std::thread::spawn(move || {
                    let mut x = 0u64;
                    while flag.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                }));
            }
            ["rest"] => {
                spinning.store(false, Ordering::SeqCst);
                if let Some(t) = spinner.take() {
                    t.join().unwrap();
                }
            }
            ["alloc", mb] => {
                let len = mb.parse::<usize>().unwrap() << 20;
                let mut block = vec![0u8; len];
                // Touch every page so it is really charged to the cgroup.
                for i in (0..len).step_by(4096) {
                    block[i] = 1;
                }
                held.push(std::hint::black_box(block));
            }
            ["free"] => held.clear(),
            ["threads", n] => {
                for _ in 0..n.parse::<usize>().unwrap() {
                    let released = released.clone();
                    sleepers.push(std::thread::spawn(move || {
                        let _ = released.lock().unwrap().recv();
                    }));
                }
            }
            ["join"] => {
                drop(release.take());
                for t in sleepers.drain(..) {
                    t.join().unwrap();
                }
            }
            ["exit"] => return,
            other => panic!("unknown command {other:?}"),
        }
        println!("did {line}");
        eprintln!("ack {line}");
    }
}

/// The child job; killed and reaped on drop.
struct Job {
    child: Child,
    stdin: ChildStdin,
}

impl Job {
    /// Starts the child inside `cgroup`.
    fn spawn(cgroup: &TestCgroup, stdout: OwnedFd, stderr: OwnedFd) -> Job {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["metrics_child_job", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1", "-q"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        cgroup.run_inside(&mut cmd);
        let mut child = cmd.spawn().expect("spawn the child job");
        let stdin = child.stdin.take().unwrap();
        Job { child, stdin }
    }

    fn tell(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn exit(mut self) {
        self.tell("exit");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child job failed: {status}");
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cgroup_or_skip() -> Option<TestCgroup> {
    match TestCgroup::create() {
        Ok(cg) => Some(cg),
        Err(reason) => {
            eprintln!("SKIPPED: no cgroup for the test: {reason}");
            None
        }
    }
}

fn last(samples: &[MetricSample]) -> &MetricSample {
    samples.last().expect("at least one sample")
}

/// Samples are in time order and counters that only grow never shrink.
fn check_order(samples: &[MetricSample]) {
    for w in samples.windows(2) {
        assert!(w[0].at_ns < w[1].at_ns, "samples out of time order: {w:?}");
        assert!(
            w[0].cpu_usage_ns <= w[1].cpu_usage_ns,
            "CPU time went down: {w:?}"
        );
        assert!(w[1].cpu_percent >= 0.0 && w[1].cpu_percent.is_finite());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_job_is_sampled_through_its_cgroup_and_its_history_survives_a_restart() {
    let Some(cgroup) = cgroup_or_skip() else {
        return;
    };
    eprintln!("cgroup v{}", if cgroup.is_v2() { 2 } else { 1 });
    cgroup.set_memory_limit(256 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let job = new_job();

    // The job's output pipes: the test keeps the read ends, as the spawner does.
    let (out_r, out_w) = std::io::pipe().unwrap();
    let (err_r, err_w) = std::io::pipe().unwrap();
    let mut child = Job::spawn(&cgroup, out_w.into(), err_w.into());
    let pipes = JobPipes {
        stdout: out_r.into(),
        stderr: err_r.into(),
    };

    let server = TestServer::start(&data, dir.path()).await;
    let (conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(
        matches!(reply, FromPersistOutput::Attached { .. }),
        "{reply:?}"
    );
    watch_on(&conn, &job, &cgroup).await;
    let follower = MetricFollower::start(&server.logs, &job);

    // The limit and the process are seen; an idle job uses (almost) no CPU.
    let s = follower.until("two samples", |s| s.len() >= 2).await;
    assert_eq!(last(&s).memory_limit, 256 * MIB);
    assert!(last(&s).pids >= 1, "{s:?}");
    assert!(last(&s).memory_bytes > 0, "{s:?}");
    follower
        .until("an idle sample", |s| {
            s.len() > 2 && last(s).cpu_percent < 10.0
        })
        .await;

    // CPU percentage rises with a busy thread, and falls back when it stops.
    let before = last(&follower.snapshot()).cpu_usage_ns;
    child.tell("spin");
    let s = follower
        .until("a busy sample", |s| last(s).cpu_percent > 30.0)
        .await;
    assert!(last(&s).cpu_usage_ns > before);
    child.tell("rest");
    follower
        .until("idle again", |s| last(s).cpu_percent < 10.0)
        .await;

    // Memory follows an allocation up and back down.
    let m0 = last(&follower.snapshot()).memory_bytes;
    child.tell("alloc 64");
    follower
        .until("64 MiB more memory", |s| {
            last(s).memory_bytes >= m0 + 60 * MIB
        })
        .await;
    child.tell("free");
    follower
        .until("the memory released", |s| {
            last(s).memory_bytes < m0 + 16 * MIB
        })
        .await;

    // pids counts threads too.
    let p0 = last(&follower.snapshot()).pids;
    child.tell("threads 5");
    follower
        .until("5 more tasks", |s| last(s).pids == p0 + 5)
        .await;
    child.tell("join");
    follower
        .until("the tasks gone", |s| last(s).pids == p0)
        .await;

    // Stop persistd; the job runs on. Its samples so far are stored.
    let seen = metrics(&server.logs, metrics_request(&job, 0, 0, 0, false))
        .await
        .unwrap();
    drop(conn);
    server.stop().await;
    assert!(
        follower.task.await.unwrap().is_none(),
        "the follower's connection ends with the server"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Restarted on the same data, with the job re-attached and watched again (as the
    // spawner does after reconnecting), the history is all there and sampling resumes.
    let server = TestServer::start(&data, dir.path()).await;
    let after = metrics(&server.logs, metrics_request(&job, 0, 0, 0, false))
        .await
        .unwrap();
    assert!(!after.complete);
    assert!(after.samples.len() >= seen.samples.len());
    assert_eq!(after.samples[..seen.samples.len()], seen.samples[..]);
    let (mut conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(
        matches!(reply, FromPersistOutput::Attached { .. }),
        "{reply:?}"
    );
    watch_on(&conn, &job, &cgroup).await;
    let follower = MetricFollower::start(&server.logs, &job);
    follower
        .until("samples after the restart", |s| {
            s.len() > after.samples.len() + 2
        })
        .await;

    // The job ends: its output drains, the final sample is taken, followers get End.
    child.exit();
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    let (next_seq, complete) = tokio::time::timeout(WAIT, follower.task)
        .await
        .expect("the follower ends with the job")
        .unwrap()
        .expect("End, not a broken connection");
    assert!(complete);
    let followed = follower.samples.lock().unwrap().clone();
    assert_eq!(
        next_seq,
        followed.len() as u64,
        "End counts the samples sent"
    );

    let all = metrics(&server.logs, metrics_request(&job, 0, 0, 0, false))
        .await
        .unwrap();
    assert!(all.complete);
    assert_eq!(
        all.samples, followed,
        "history equals what the follower saw"
    );
    check_order(&all.samples);
    assert!(all.samples.iter().any(|s| s.cpu_percent > 30.0));
    assert!(
        all.samples
            .iter()
            .all(|s| s.net_rx_bytes == 0 && s.net_tx_bytes == 0)
    );

    // Nothing follows a complete job: a new follower ends at once.
    let again = metrics(&server.logs, metrics_request(&job, 0, 0, 0, true))
        .await
        .unwrap();
    assert!(again.complete);
    assert_eq!(again.samples, all.samples);

    // `limit` keeps the last samples; the time window is inclusive.
    let n = all.samples.len();
    let tail = metrics(&server.logs, metrics_request(&job, 0, 0, 3, false))
        .await
        .unwrap();
    assert_eq!(tail.samples, all.samples[n - 3..]);
    assert_eq!(tail.next_seq, 3);
    let (a, b) = (all.samples[2].at_ns, all.samples[5].at_ns);
    let window = metrics(&server.logs, metrics_request(&job, a, b, 0, false))
        .await
        .unwrap();
    assert_eq!(window.samples, all.samples[2..=5]);
    let window_tail = metrics(&server.logs, metrics_request(&job, a, b, 2, true))
        .await
        .unwrap();
    assert_eq!(window_tail.samples, all.samples[4..=5]);

    // Deleting the job deletes its samples.
    assert!(matches!(
        request(&server.logs, ToPersistLogs::Delete { job: job.clone() }).await,
        FromPersistLogs::Deleted
    ));
    match metrics(&server.logs, metrics_request(&job, 0, 0, 0, false)).await {
        Err(FromPersistLogs::Error(e)) => assert_eq!(e.kind, RemoteErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_ends_when_the_cgroup_is_removed_and_followers_end_with_the_output() {
    let Some(mut cgroup) = cgroup_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let (pipes, running) = open_job();
    let (mut conn, _) = attach(&server.output, &job, &pipes).await;
    watch_on(&conn, &job, &cgroup).await;
    let follower = MetricFollower::start(&server.logs, &job);
    let s = follower.until("samples", |s| s.len() >= 3).await;
    // An empty cgroup: no task, no CPU time.
    assert_eq!(last(&s).pids, 0);
    assert_eq!(last(&s).cpu_usage_ns, 0);

    cgroup.remove();
    // Wait for the pass that finds it gone, then check no sample follows.
    tokio::time::sleep(TEST_INTERVAL * 3).await;
    let stopped = follower.snapshot().len();
    tokio::time::sleep(TEST_INTERVAL * 5).await;
    assert_eq!(
        follower.snapshot().len(),
        stopped,
        "sampled a removed cgroup"
    );
    assert!(
        !follower.task.is_finished(),
        "the job's output is still open"
    );

    // The output ends: the follower ends, complete.
    drop(running);
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    let end = tokio::time::timeout(WAIT, follower.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, Some((stopped as u64, true)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ended_before_its_watch_gets_one_sample() {
    let Some(cgroup) = cgroup_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let (pipes, writer) = start_job(3, Duration::ZERO);
    writer.join().unwrap();
    let (mut conn, _) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    // Its samples are closed already (not watched when its output ended)...
    let none = metrics(&server.logs, metrics_request(&job, 0, 0, 0, true))
        .await
        .unwrap();
    assert_eq!((none.samples.len(), none.complete), (0, true));
    // ...and the late Watch still records the job's cgroup once, then never again.
    watch_on(&conn, &job, &cgroup).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let one = loop {
        let r = metrics(&server.logs, metrics_request(&job, 0, 0, 0, false))
            .await
            .unwrap();
        if !r.samples.is_empty() || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(one.samples.len(), 1);
    watch_on(&conn, &job, &cgroup).await;
    tokio::time::sleep(TEST_INTERVAL * 3).await;
    let still = metrics(&server.logs, metrics_request(&job, 0, 0, 0, false))
        .await
        .unwrap();
    assert_eq!(still.samples, one.samples);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_an_unknown_job_are_not_found_and_a_follower_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    match metrics(&server.logs, metrics_request(&job, 0, 0, 0, false)).await {
        Err(FromPersistLogs::Error(e)) => assert_eq!(e.kind, RemoteErrorKind::NotFound, "{e}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // With follow, the request waits for the job, like a log Read; an unwatched job's
    // follower ends when its output does.
    let follower = MetricFollower::start(&server.logs, &job);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!follower.task.is_finished());
    let (pipes, writer) = start_job(3, Duration::ZERO);
    writer.join().unwrap();
    let (mut conn, _) = attach(&server.output, &job, &pipes).await;
    recv_output(&mut conn).await;
    let end = tokio::time::timeout(WAIT, follower.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, Some((0, true)));
    server.stop().await;
}

/// `to_ns` ends a follower once the window has passed, even while the job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_window_ends_when_the_window_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let (pipes, writer) = start_job(200, Duration::from_millis(20));
    let (_conn, _) = attach(&server.output, &job, &pipes).await;
    let to_ns = joblet_persistd::clock::now_ns() + 300_000_000;
    let r = metrics(&server.logs, metrics_request(&job, 0, to_ns, 0, true))
        .await
        .unwrap();
    assert!(!r.complete, "the job is still running");
    assert!(joblet_persistd::clock::now_ns() >= to_ns);
    writer.join().unwrap();
    server.stop().await;
}
