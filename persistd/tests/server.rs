//! The real server on temp sockets, driven with the real protocol as the spawner and the
//! frontend drive it.

mod common;

use std::time::Duration;

use common::*;
use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, ToPersistLogs};
use joblet_ipc_proto::channel::output::FromPersistOutput;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_followers_see_every_line_once_in_order_and_eof_drains() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let lines = 400;
    let (pipes, writer) = start_job(lines, Duration::from_millis(3));

    let early = tokio::spawn({
        let (path, job) = (server.logs.clone(), job.clone());
        // Starts before the job is even attached: waits for it to appear.
        async move { read(&path, &job, 0, true).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut out_conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { job: ref j } if *j == job));

    // The second follower joins mid-stream, from the start: history then live.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = tokio::spawn({
        let (path, job) = (server.logs.clone(), job.clone());
        async move { read(&path, &job, 0, true).await }
    });

    writer.join().unwrap();
    // The job exited: its write ends are closed. The spawner hears Drained...
    let drained = recv_output(&mut out_conn).await;
    assert!(matches!(drained, FromPersistOutput::Drained { job: ref j } if *j == job));

    // ...and every follower ends with the complete log.
    for follower in [early, late] {
        let r = follower.await.unwrap();
        assert!(r.complete, "follow must end with complete = true");
        assert_eq!(r.next_seq, seq_count(&r.chunks));
        assert_all_lines(&r.chunks, lines);
    }
    // A later reader gets the same history, and the end is reported complete.
    let again = read(&server.logs, &job, 0, false).await;
    assert!(again.complete);
    assert_all_lines(&again.chunks, lines);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_stream_and_restarting_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let job = new_job();
    let lines = 600;
    let (pipes, writer) = start_job(lines, Duration::from_millis(2));

    let server = TestServer::start(&data, dir.path()).await;
    let (_conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));
    let logs = server.logs.clone();
    let mut before = 0;
    for _ in 0..200 {
        before = seq_count(&stored(&logs, &job).await);
        if before >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(before >= 20, "some output stored before the stop");

    // Stop mid-stream; the job keeps writing into the pipe meanwhile.
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Restart on the same data dir; the spawner re-attaches the same pipes.
    let server = TestServer::start(&data, dir.path()).await;
    let mid = read(&server.logs, &job, 0, false).await;
    assert!(!mid.complete);
    assert!(
        seq_count(&mid.chunks) >= before,
        "stored output survived the restart"
    );
    let (mut conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));

    // Resume exactly where the earlier read stopped: no gap, no duplicate at the seam.
    let follower = tokio::spawn({
        let (path, job, from) = (server.logs.clone(), job.clone(), mid.next_seq);
        async move { read(&path, &job, from, true).await }
    });
    writer.join().unwrap();
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    let rest = follower.await.unwrap();
    assert!(rest.complete);
    let mut all = mid.chunks;
    all.extend(rest.chunks);
    assert_all_lines(&all, lines);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_attach_is_acknowledged_and_the_last_attacher_hears_drained() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let (pipes, writer) = start_job(100, Duration::from_millis(5));
    let (first, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));
    // As after a spawner restart: a new connection attaches the same job again.
    drop(first);
    let (mut second, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));
    writer.join().unwrap();
    assert!(matches!(
        recv_output(&mut second).await,
        FromPersistOutput::Drained { .. }
    ));
    // Attaching a complete job is answered with Drained at once.
    let (_third, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Drained { job: ref j } if *j == job));
    assert_all_lines(&stored(&server.logs, &job).await, 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_whose_writers_are_gone_is_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    // The job wrote everything (about 9 KiB, less than a pipe holds) and exited before
    // persistd ever saw the pipes.
    let (pipes, writer) = start_job(1000, Duration::ZERO);
    writer.join().unwrap();
    let (mut conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    let r = read(&server.logs, &job, 0, true).await;
    assert!(r.complete);
    assert_all_lines(&r.chunks, 1000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_resume_from_any_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let (pipes, writer) = start_job(200, Duration::from_millis(1));
    let (mut conn, _) = attach(&server.output, &job, &pipes).await;
    writer.join().unwrap();
    recv_output(&mut conn).await;

    let whole = read(&server.logs, &job, 0, false).await;
    let n = seq_count(&whole.chunks);
    assert_eq!(whole.next_seq, n);
    assert!(n > 10);
    let (whole_out, whole_err) = check_chunks(&whole.chunks, 0);
    for from in [1, n / 2, n - 1] {
        let part = read(&server.logs, &job, from, true).await;
        assert!(part.complete);
        assert_eq!(part.next_seq, n);
        // Exactly chunks from..n: they start at `from`, and their bytes are each stream's end.
        let (out, err) = check_chunks(&part.chunks, from);
        assert_eq!(seq_count(&part.chunks), n - from);
        assert_eq!(out[..], whole_out[whole_out.len() - out.len()..]);
        assert_eq!(err[..], whole_err[whole_err.len() - err.len()..]);
    }
    // Past the end: nothing, and the end is reported.
    let past = read(&server.logs, &job, n + 5, false).await;
    assert!(past.chunks.is_empty());
    assert!(past.complete);
    // Several reads in a row on one connection.
    let mut c = joblet_ipc_proto::tokio::connect(&server.logs, joblet_ipc_proto::Channel::Logs)
        .await
        .unwrap();
    let a = read_on(&mut c, &job, 0, false).await;
    let b = read_on(&mut c, &job, n - 2, false).await;
    assert_eq!(seq_count(&a.chunks), n);
    assert_eq!(seq_count(&b.chunks), 2);
    assert_eq!(b.chunks[0].first_seq, n - 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_jobs_and_delete_rules() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data, dir.path()).await;
    let job = new_job();

    let not_found = |reply: FromPersistLogs| match reply {
        FromPersistLogs::Error(e) => assert_eq!(e.kind, RemoteErrorKind::NotFound, "{e}"),
        other => panic!("expected NotFound, got {other:?}"),
    };
    let read_unknown = ToPersistLogs::Read {
        job: job.clone(),
        from_seq: 0,
        follow: false,
    };
    not_found(request(&server.logs, read_unknown).await);
    not_found(request(&server.logs, ToPersistLogs::Delete { job: job.clone() }).await);

    let (pipes, writer) = start_job(50, Duration::from_millis(20));
    let (mut conn, _) = attach(&server.output, &job, &pipes).await;
    // While the pipes are being read, the output cannot be deleted.
    match request(&server.logs, ToPersistLogs::Delete { job: job.clone() }).await {
        FromPersistLogs::Error(e) => {
            assert_eq!(e.kind, RemoteErrorKind::FailedPrecondition, "{e}")
        }
        other => panic!("expected FailedPrecondition, got {other:?}"),
    }
    writer.join().unwrap();
    recv_output(&mut conn).await;
    let job_dir = data.join("jobs").join(job.as_str());
    assert!(job_dir.is_dir());
    assert!(matches!(
        request(&server.logs, ToPersistLogs::Delete { job: job.clone() }).await,
        FromPersistLogs::Deleted
    ));
    assert!(!job_dir.exists());
    assert_eq!(std::fs::read_dir(data.join("trash")).unwrap().count(), 0);
    not_found(request(&server.logs, ToPersistLogs::Delete { job: job.clone() }).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_of_a_deleted_job_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let job = new_job();
    // A running job (its write ends stay open) whose output persistd stored, then persistd
    // restarted: the output is not complete and not attached.
    let (out_r, mut out_w) = std::io::pipe().unwrap();
    let (err_r, err_w) = std::io::pipe().unwrap();
    std::io::Write::write_all(&mut out_w, b"out-0\nout-1\n").unwrap();
    let pipes = JobPipes {
        stdout: out_r.into(),
        stderr: err_r.into(),
    };
    let server = TestServer::start(&data, dir.path()).await;
    let (_conn, _) = attach(&server.output, &job, &pipes).await;
    eventually_stored(&server, &job, 2).await;
    server.stop().await;
    let server = TestServer::start(&data, dir.path()).await;

    let mut c = joblet_ipc_proto::tokio::connect(&server.logs, joblet_ipc_proto::Channel::Logs)
        .await
        .unwrap();
    let req = ToPersistLogs::Read {
        job: job.clone(),
        from_seq: 0,
        follow: true,
    };
    c.send(&req, &[]).await.unwrap();
    // The files, then history, then the follower waits for more.
    let files = c.recv::<FromPersistLogs>().await.unwrap();
    assert!(matches!(files.msg, FromPersistLogs::Files));
    assert_eq!(files.fds.len(), 2);
    let first = c.recv::<FromPersistLogs>().await.unwrap().msg;
    assert!(matches!(first, FromPersistLogs::Range(_)));
    assert!(matches!(
        request(&server.logs, ToPersistLogs::Delete { job: job.clone() }).await,
        FromPersistLogs::Deleted
    ));
    loop {
        match c.recv::<FromPersistLogs>().await.unwrap().msg {
            FromPersistLogs::Range(_) => continue,
            FromPersistLogs::Error(e) => {
                assert_eq!(e.kind, RemoteErrorKind::NotFound, "{e}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop((pipes, out_w, err_w));
    server.stop().await;
}

async fn eventually_stored(server: &TestServer, job: &joblet_ipc_proto::job::JobId, lines: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (out, err) = check_chunks(&stored(&server.logs, job).await, 0);
        if out.len() + err.len() >= lines {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "output not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
