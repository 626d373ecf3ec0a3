//! The reader against a fake persistd on a real socket, speaking ipc-proto's own `Sender`
//! (or, for frames our `Sender` refuses to send, raw `sendmsg`).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;

use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogRange};
use joblet_ipc_proto::tokio::{Listener, Receiver, Sender, connect};
use joblet_ipc_proto::{Channel, IpcError, MAX_LOG_RANGE, RemoteError, codec};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::*;

/// A connected pair: the fake persistd's end and the reader on the other.
struct Pair {
    persistd: Sender,
    _persistd_rx: Receiver,
    reader: LogReader,
    _dir: tempfile::TempDir,
    stdout: File,
    stderr: File,
}

async fn pair(from_seq: u64, stdout: &[u8], stderr: &[u8]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("persistd.sock");
    let me = nix::unistd::getuid().as_raw();
    let mut listener = Listener::bind(&sock, Channel::Logs, vec![me]).unwrap();
    let server = tokio::spawn(async move { listener.accept().await.unwrap().handshake().await });
    let client = connect(&sock, Channel::Logs).await.unwrap();
    let (persistd, persistd_rx) = server.await.unwrap().unwrap().split();
    Pair {
        persistd,
        _persistd_rx: persistd_rx,
        reader: LogReader::new(client, from_seq),
        stdout: data_file(&dir.path().join("stdout"), stdout),
        stderr: data_file(&dir.path().join("stderr"), stderr),
        _dir: dir,
    }
}

/// A data file as persistd hands it out: read-only.
fn data_file(path: &PathBuf, bytes: &[u8]) -> File {
    std::fs::File::create(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    File::open(path).unwrap()
}

fn range(first_seq: u64, last_seq: u64, stream: Stream, offset: u64, len: u32) -> LogRange {
    LogRange {
        first_seq,
        last_seq,
        stream,
        at_ns: 7,
        offset,
        len,
    }
}

impl Pair {
    async fn send(&self, msg: FromPersistLogs) {
        self.persistd.send(&msg, &[]).await.unwrap();
    }

    async fn send_files(&self) {
        let fds = [self.stdout.as_fd(), self.stderr.as_fd()];
        self.persistd
            .send(&FromPersistLogs::Files, &fds)
            .await
            .unwrap();
    }

    /// Sends `msg` as raw bytes with `fds`, past the checks our `Sender` makes.
    fn send_raw(&self, msg: &FromPersistLogs, fds: &[BorrowedFd<'_>]) {
        let mut buf = Vec::new();
        codec::encode(msg, &mut buf).unwrap();
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
        sendmsg::<()>(
            self.persistd.raw_fd(),
            &[std::io::IoSlice::new(&buf)],
            cmsgs,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }
}

async fn next(p: &mut Pair) -> Result<ReadEvent, LogReadError> {
    tokio::time::timeout(std::time::Duration::from_secs(5), p.reader.next())
        .await
        .expect("the reader answers, it does not hang")
}

fn chunk(event: Result<ReadEvent, LogReadError>) -> LogChunk {
    match event {
        Ok(ReadEvent::Chunk(c)) => c,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

#[tokio::test]
async fn ranges_become_chunks_read_from_the_files() {
    let mut p = pair(3, b"hello world\n", b"oops\n").await;
    p.send_files().await;
    p.send(FromPersistLogs::Range(range(3, 5, Stream::Stdout, 6, 6)))
        .await;
    p.send(FromPersistLogs::Range(range(6, 6, Stream::Stderr, 0, 5)))
        .await;
    p.send(FromPersistLogs::End {
        next_seq: 7,
        complete: true,
    })
    .await;
    let c = chunk(next(&mut p).await);
    assert_eq!((c.seq, c.stream, c.at_ns), (5, Stream::Stdout, 7));
    assert_eq!(c.data, b"world\n");
    let c = chunk(next(&mut p).await);
    assert_eq!(
        (c.seq, c.stream, c.data.as_slice()),
        (6, Stream::Stderr, &b"oops\n"[..])
    );
    assert!(matches!(
        next(&mut p).await,
        Ok(ReadEvent::End {
            next_seq: 7,
            complete: true
        })
    ));
}

#[tokio::test]
async fn errors_from_persistd_are_passed_on() {
    let mut p = pair(0, b"", b"").await;
    p.send(FromPersistLogs::Error(RemoteError::not_found("gone")))
        .await;
    assert!(matches!(next(&mut p).await, Ok(ReadEvent::Error(e)) if e.message == "gone"));
}

#[tokio::test]
async fn a_range_before_the_files_is_refused() {
    let mut p = pair(0, b"abc", b"").await;
    p.send(FromPersistLogs::Range(range(0, 0, Stream::Stdout, 0, 3)))
        .await;
    let err = next(&mut p).await.unwrap_err();
    assert!(
        matches!(err, LogReadError::RangeBeforeFiles { first: 0, last: 0 }),
        "{err}"
    );
    assert!(!err.is_link());
}

#[tokio::test]
async fn a_range_that_does_not_start_at_the_next_chunk_is_refused() {
    for first in [4, 6] {
        let mut p = pair(5, b"abcdef", b"").await;
        p.send_files().await;
        p.send(FromPersistLogs::Range(range(
            first,
            9,
            Stream::Stdout,
            0,
            3,
        )))
        .await;
        let err = next(&mut p).await.unwrap_err();
        assert!(
            matches!(err, LogReadError::OutOfOrder { expected: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("where chunk 5 was next"), "{err}");
    }
    // The expected chunk moves on with every range read.
    let mut p = pair(0, b"abcdef", b"").await;
    p.send_files().await;
    p.send(FromPersistLogs::Range(range(0, 1, Stream::Stdout, 0, 3)))
        .await;
    p.send(FromPersistLogs::Range(range(1, 2, Stream::Stdout, 3, 3)))
        .await;
    chunk(next(&mut p).await);
    assert!(matches!(
        next(&mut p).await,
        Err(LogReadError::OutOfOrder { expected: 2, .. })
    ));
}

#[tokio::test]
async fn a_file_shorter_than_its_range_is_a_clear_error() {
    let mut p = pair(0, b"0123456789", b"").await;
    p.send_files().await;
    p.send(FromPersistLogs::Range(range(0, 0, Stream::Stdout, 8, 3)))
        .await;
    let err = next(&mut p).await.unwrap_err();
    assert!(
        matches!(
            err,
            LogReadError::ShortFile {
                offset: 8,
                len: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("ends before chunks 0..=0"),
        "{err}"
    );
    assert!(!err.is_link());
}

#[tokio::test]
async fn the_files_twice_are_refused() {
    let mut p = pair(0, b"", b"").await;
    p.send_files().await;
    p.send_files().await;
    assert!(matches!(next(&mut p).await, Err(LogReadError::FilesTwice)));
}

#[tokio::test]
async fn a_range_over_the_maximum_breaks_the_link() {
    let mut p = pair(0, b"", b"").await;
    p.send_files().await;
    let huge = range(0, 0, Stream::Stdout, 0, MAX_LOG_RANGE as u32 + 1);
    // Our own sender refuses to send it...
    let msg = FromPersistLogs::Range(huge);
    assert!(p.persistd.send(&msg, &[]).await.is_err());
    // ...and the reader refuses it when another sends it anyway.
    p.send_raw(&msg, &[]);
    let err = next(&mut p).await.unwrap_err();
    assert!(
        matches!(&err, LogReadError::Link(IpcError::Malformed(m)) if m.contains("range length")),
        "{err}"
    );
    assert!(err.is_link(), "resumed like any broken connection");
}

#[tokio::test]
async fn the_wrong_number_of_fds_breaks_the_link() {
    let mut p = pair(0, b"", b"").await;
    p.send_raw(&FromPersistLogs::Files, &[p.stdout.as_fd()]);
    let err = next(&mut p).await.unwrap_err();
    assert!(
        matches!(
            err,
            LogReadError::Link(IpcError::UnexpectedFds {
                expected: 2,
                got: 1,
                ..
            })
        ),
        "{err}"
    );
    // Fds on a message that carries none.
    let mut p = pair(0, b"", b"").await;
    let end = FromPersistLogs::End {
        next_seq: 0,
        complete: true,
    };
    p.send_raw(&end, &[p.stdout.as_fd()]);
    assert!(next(&mut p).await.unwrap_err().is_link());
}

#[tokio::test]
async fn a_reply_to_another_request_is_unexpected() {
    let mut p = pair(0, b"", b"").await;
    p.send(FromPersistLogs::Deleted).await;
    assert!(matches!(
        next(&mut p).await,
        Err(LogReadError::Unexpected("Deleted"))
    ));
}

#[tokio::test]
async fn a_next_dropped_half_way_loses_nothing() {
    // Big enough that its read is still running when the first poll returns.
    let big: Vec<u8> = (0..MAX_LOG_RANGE).map(|i| (i % 251) as u8).collect();
    let mut p = pair(0, &big, b"tail").await;
    p.send_files().await;
    let len = MAX_LOG_RANGE as u32;
    p.send(FromPersistLogs::Range(range(0, 15, Stream::Stdout, 0, len)))
        .await;
    p.send(FromPersistLogs::Range(range(16, 16, Stream::Stderr, 0, 4)))
        .await;
    // As `select!` does when another branch wins: poll `next` once, then drop it.
    let mut got = Vec::new();
    let mut dropped = 0;
    while got.len() < 2 {
        let polled_once = tokio::select! {
            biased;
            event = p.reader.next() => Some(event),
            () = std::future::ready(()) => None,
        };
        match polled_once {
            Some(event) => got.push(chunk(event)),
            None => {
                dropped += 1;
                tokio::time::sleep(std::time::Duration::from_micros(100)).await;
            }
        }
        assert!(dropped < 100_000, "the reader never finished");
    }
    assert!(
        dropped > 0,
        "no next was dropped half way; the test tested nothing"
    );
    assert_eq!((got[0].seq, got[0].data == big), (15, true));
    assert_eq!((got[1].seq, got[1].data.as_slice()), (16, &b"tail"[..]));
}
