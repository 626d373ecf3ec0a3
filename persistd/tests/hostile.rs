//! Malformed and abusive input closes only the connection it came on.

mod common;

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::*;
use joblet_ipc_proto::Channel;
use joblet_ipc_proto::channel::logs::{FromPersistLogs, ToPersistLogs};
use joblet_ipc_proto::channel::output::{CgroupDir, FromPersistOutput, ToPersistOutput};
use joblet_ipc_proto::codec;
use joblet_ipc_proto::tokio::{Receiver, connect};
use nix::sys::socket::{ControlMessage, MsgFlags, send, sendmsg};

/// The server closed this connection (the next receive fails instead of waiting).
async fn assert_closed<M: codec::Message>(mut rx: Receiver) {
    let r = tokio::time::timeout(WAIT, rx.recv::<M>())
        .await
        .expect("the server should close the connection, not leave it hanging");
    assert!(r.is_err(), "connection still answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_logs_channel_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let (pipes, writer) = start_job(300, Duration::from_millis(3));
    let (mut out, _) = attach(&server.output, &job, &pipes).await;
    let follower = tokio::spawn({
        let (path, job) = (server.logs.clone(), job.clone());
        async move { read(&path, &job, 0, true).await }
    });

    let hostile: &[&[u8]] = &[
        &[0xff, 0xff, 0xff, 0xff],
        // Variant 0 (Read) with its fields missing: a truncated frame.
        &[0],
        // An unknown variant.
        &[9, 1, 2, 3],
        // A Read whose job id is a path.
        &postcard_read_with_raw_job("../../../etc/passwd"),
    ];
    for frame in hostile {
        let conn = connect(&server.logs, Channel::Logs).await.unwrap();
        let (tx, rx) = conn.split();
        send(tx.raw_fd(), frame, MsgFlags::empty()).unwrap();
        assert_closed::<FromPersistLogs>(rx).await;
    }

    // A second request while a Read is running breaks the one-reader-per-connection rule.
    let busy = connect(&server.logs, Channel::Logs).await.unwrap();
    let follow = ToPersistLogs::Read {
        job: job.clone(),
        from_seq: 0,
        follow: true,
    };
    busy.send(&follow, &[]).await.unwrap();
    busy.send(&ToPersistLogs::Delete { job: job.clone() }, &[])
        .await
        .unwrap();
    let (_tx, mut rx) = busy.split();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection not closed"
        );
        match rx.recv::<FromPersistLogs>().await {
            Ok(r) => assert!(
                matches!(r.msg, FromPersistLogs::Files | FromPersistLogs::Range(_)),
                "{:?}",
                r.msg
            ),
            Err(_) => break,
        }
    }

    // Meanwhile the honest follower and the pump carried on.
    writer.join().unwrap();
    assert!(matches!(
        recv_output(&mut out).await,
        FromPersistOutput::Drained { .. }
    ));
    let r = follower.await.unwrap();
    assert!(r.complete);
    assert_all_lines(&r.chunks, 300);
    // And new connections are served.
    assert!(read(&server.logs, &job, 0, false).await.complete);
    server.stop().await;
}

/// A `Read` frame as postcard encodes it, with any string as the job id.
fn postcard_read_with_raw_job(job: &str) -> Vec<u8> {
    let mut frame = vec![0u8]; // variant Read
    frame.extend(postcard::to_allocvec(&job.to_owned()).unwrap());
    frame.extend(postcard::to_allocvec(&(0u64, true)).unwrap());
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_attachments_close_the_output_connection_and_attach_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data, dir.path()).await;
    let job = new_job();
    let attach_msg = ToPersistOutput::Attach {
        job: job.clone(),
        started_ns: 0,
    };

    // Regular files instead of pipes.
    let file = std::fs::File::open("/dev/null").unwrap();
    let conn = connect(&server.output, Channel::Output).await.unwrap();
    conn.send(&attach_msg, &[file.as_fd(), file.as_fd()])
        .await
        .unwrap();
    assert_closed::<FromPersistOutput>(conn.split().1).await;

    // The write ends of pipes instead of the read ends.
    let (_r1, w1) = std::io::pipe().unwrap();
    let (_r2, w2) = std::io::pipe().unwrap();
    let conn = connect(&server.output, Channel::Output).await.unwrap();
    conn.send(&attach_msg, &[w1.as_fd(), w2.as_fd()])
        .await
        .unwrap();
    assert_closed::<FromPersistOutput>(conn.split().1).await;

    // One fd where the message declares two (bypassing our own sender's check).
    let (r3, _w3) = std::io::pipe().unwrap();
    let conn = connect(&server.output, Channel::Output).await.unwrap();
    let (tx, rx) = conn.split();
    let mut frame = Vec::new();
    codec::encode(&attach_msg, &mut frame).unwrap();
    let fds = [r3.as_raw_fd()];
    sendmsg::<()>(
        tx.raw_fd(),
        &[IoSlice::new(&frame)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_closed::<FromPersistOutput>(rx).await;

    // Garbage.
    let conn = connect(&server.output, Channel::Output).await.unwrap();
    let (tx, rx) = conn.split();
    send(tx.raw_fd(), &[0x00, 0xff], MsgFlags::empty()).unwrap();
    assert_closed::<FromPersistOutput>(rx).await;

    // None of that attached the job; a proper Attach still works.
    let (pipes, writer) = start_job(10, Duration::ZERO);
    writer.join().unwrap();
    let (mut conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    assert_all_lines(&stored(&server.logs, &job).await, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_channel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let err = connect(&server.logs, Channel::Output)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("serves channel logs"), "{err}");
    let err = connect(&server.output, Channel::Logs)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("serves channel output"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watches_close_the_output_connection_and_sample_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), dir.path()).await;
    let job = new_job();
    let watch = |dirs: Vec<CgroupDir>| ToPersistOutput::Watch {
        job: job.clone(),
        dirs,
    };

    // A directory that is not a cgroup, and a file that is not a directory.
    let plain_dir = std::fs::File::open(dir.path()).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    for (kind, fd) in [
        (CgroupDir::Unified, plain_dir.as_fd()),
        (CgroupDir::Memory, plain_dir.as_fd()),
        (CgroupDir::Pids, file.as_fd()),
    ] {
        let conn = connect(&server.output, Channel::Output).await.unwrap();
        conn.send(&watch(vec![kind]), &[fd]).await.unwrap();
        assert_closed::<FromPersistOutput>(conn.split().1).await;
    }

    // Fewer fds than the message names (bypassing our own sender's check).
    let conn = connect(&server.output, Channel::Output).await.unwrap();
    let (tx, rx) = conn.split();
    let mut frame = Vec::new();
    codec::encode(&watch(vec![CgroupDir::Cpu, CgroupDir::Memory]), &mut frame).unwrap();
    let fds = [plain_dir.as_raw_fd()];
    sendmsg::<()>(
        tx.raw_fd(),
        &[IoSlice::new(&frame)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_closed::<FromPersistOutput>(rx).await;

    // Real cgroup directories, but named twice, or v1 directories passed off as v2.
    match common::cgroup::TestCgroup::create() {
        Ok(cg) => {
            let (kinds, fds) = cg.open_dirs();
            let (kind, fd) = (kinds[0], &fds[0]);
            let conn = connect(&server.output, Channel::Output).await.unwrap();
            conn.send(&watch(vec![kind, kind]), &[fd.as_fd(), fd.as_fd()])
                .await
                .unwrap();
            assert_closed::<FromPersistOutput>(conn.split().1).await;
            let other = if cg.is_v2() {
                CgroupDir::Memory
            } else {
                CgroupDir::Unified
            };
            let conn = connect(&server.output, Channel::Output).await.unwrap();
            conn.send(&watch(vec![other]), &[fd.as_fd()]).await.unwrap();
            assert_closed::<FromPersistOutput>(conn.split().1).await;
        }
        Err(reason) => eprintln!("SKIPPED the real-cgroup cases: {reason}"),
    }

    // None of it created the job or sampled anything.
    let reply = request(
        &server.logs,
        ToPersistLogs::Metrics {
            job: job.clone(),
            from_ns: 0,
            to_ns: 0,
            limit: 0,
            follow: false,
        },
    )
    .await;
    assert!(
        matches!(reply, FromPersistLogs::Error(ref e) if e.kind == joblet_ipc_proto::RemoteErrorKind::NotFound),
        "{reply:?}"
    );
    // The output channel still works.
    let (pipes, writer) = start_job(5, Duration::ZERO);
    writer.join().unwrap();
    let (mut conn, reply) = attach(&server.output, &job, &pipes).await;
    assert!(matches!(reply, FromPersistOutput::Attached { .. }));
    assert!(matches!(
        recv_output(&mut conn).await,
        FromPersistOutput::Drained { .. }
    ));
    server.stop().await;
}
