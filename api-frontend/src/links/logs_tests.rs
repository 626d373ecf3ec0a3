//! Connection reuse against a fake persistd on a real socket: it answers every `Read` with
//! an immediate `End`, and counts the connections it accepted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use joblet_ipc_proto::tokio::Listener;
use tokio::sync::mpsc;

use super::*;
use crate::links::log_reader::ReadEvent;

struct FakePersistd {
    client: LogsClient,
    accepted: Arc<AtomicUsize>,
    /// When set, the fake closes a connection right after the `End` of a read on it.
    close_after_end: Arc<AtomicBool>,
    /// One message per connection the fake has closed.
    closed: mpsc::UnboundedReceiver<()>,
    _dir: tempfile::TempDir,
}

fn job() -> JobId {
    JobId::parse("0b6d3c1e-8e1a-4c1f-9a51-3f2f6b7d9e10").unwrap()
}

fn fake_persistd() -> FakePersistd {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("logs.sock");
    let me = nix::unistd::getuid().as_raw();
    let mut listener = Listener::bind(&sock, Channel::Logs, vec![me]).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let close_after_end = Arc::new(AtomicBool::new(false));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (count, close) = (accepted.clone(), close_after_end.clone());
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut conn = incoming.handshake().await.unwrap();
            let (closed_tx, close) = (closed_tx.clone(), close.clone());
            tokio::spawn(async move {
                while let Ok(req) = conn.recv::<ToPersistLogs>().await {
                    let ToPersistLogs::Read { from_seq, .. } = req.msg else {
                        panic!("only reads are expected");
                    };
                    let end = FromPersistLogs::End {
                        next_seq: from_seq,
                        complete: true,
                    };
                    // A client that went away first makes the send fail: that ends it too.
                    if conn.send(&end, &[]).await.is_err() || close.load(Ordering::SeqCst) {
                        break;
                    }
                }
                drop(conn);
                let _ = closed_tx.send(());
            });
        }
    });
    FakePersistd {
        client: LogsClient::new(sock),
        accepted,
        close_after_end,
        closed,
        _dir: dir,
    }
}

/// Reads once to persistd's end of the read, then releases the connection.
async fn read_to_end(client: &LogsClient) {
    let mut reader = client.read(&job(), 4, false).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
    assert!(
        matches!(end, Ok(Ok(ReadEvent::End { next_seq: 4, .. }))),
        "{end:?}"
    );
    reader.release();
}

#[tokio::test]
async fn a_read_persistd_ended_leaves_its_connection_to_the_next() {
    let p = fake_persistd();
    for _ in 0..3 {
        read_to_end(&p.client).await;
    }
    assert_eq!(p.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_read_cut_short_closes_its_connection() {
    let mut p = fake_persistd();
    let reader = p.client.read(&job(), 0, true).await.unwrap();
    // Released before its end was received: persistd may still be sending on it.
    reader.release();
    tokio::time::timeout(Duration::from_secs(5), p.closed.recv())
        .await
        .expect("the connection of a read cut short is closed");
    read_to_end(&p.client).await;
    assert_eq!(p.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_persistd_closed_is_replaced() {
    let mut p = fake_persistd();
    p.close_after_end.store(true, Ordering::SeqCst);
    read_to_end(&p.client).await;
    // As after a restart of persistd: the idle connection's other end is gone.
    tokio::time::timeout(Duration::from_secs(5), p.closed.recv())
        .await
        .expect("the fake closed its end");
    p.close_after_end.store(false, Ordering::SeqCst);
    read_to_end(&p.client).await;
    assert_eq!(p.accepted.load(Ordering::SeqCst), 2);
}
