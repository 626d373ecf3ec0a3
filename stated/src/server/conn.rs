//! One client connection: requests are read and started in order, replies sent in order.
//!
//! A client may send several requests before reading any reply (pipelining); up to
//! [`MAX_IN_FLIGHT`] are in progress at once, so the writes of one connection share group
//! commits too. Order stays exactly as if each request ran alone: writes reach the writer in
//! the order received, and a read waits until every earlier reply has been sent, so it sees
//! all earlier writes of its connection and none of the later ones (those are only read off
//! the socket after it ran).

use joblet_ipc_proto::IpcError;
use joblet_ipc_proto::channel::state::{FromState, ToState};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::tokio::{Incoming, Receiver, Sender};
use tokio::sync::{mpsc, watch};

use super::request::{self, Action, Read};
use crate::store::{PendingWrite, Store};

/// Requests of one connection in progress at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// A reply in the making, in request order.
enum Pending {
    /// Boxed: a reply may hold a whole record, and queued replies are mostly writes.
    Ready(Box<FromState>),
    Write(PendingWrite),
}

/// Why the reading side stopped.
enum End {
    /// The peer closed (or shut down its sending side): pending replies are still sent.
    PeerClosed,
    /// A malformed frame or other violation: the connection is dropped at once.
    Violation(IpcError),
    /// The replying side stopped (the peer is gone), or the daemon is stopping.
    Stopped,
}

pub(super) async fn serve(incoming: Incoming, store: Store, conn: u64) {
    let checked = match incoming.handshake().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(conn, error = %e, "connection refused");
            return;
        }
    };
    tracing::debug!(conn, peer_uid = checked.peer_uid(), "connection accepted");
    let (sender, mut receiver) = checked.split();
    let (queue_tx, queue_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let (sent_tx, sent_rx) = watch::channel(0u64);
    let reading = async {
        let end = read_requests(conn, &mut receiver, &store, queue_tx, sent_rx).await;
        if let End::Violation(e) = &end {
            tracing::warn!(conn, error = %e, "closing the connection: protocol violation");
            // Also stops the replying side, whose next send fails.
            sender.shutdown();
        }
        end
    };
    let (end, ()) = tokio::join!(reading, send_replies(conn, &sender, queue_rx, sent_tx));
    if matches!(end, End::PeerClosed) {
        tracing::debug!(conn, "connection closed by the peer");
    }
}

async fn read_requests(
    conn: u64,
    receiver: &mut Receiver,
    store: &Store,
    queue: mpsc::Sender<Pending>,
    mut sent: watch::Receiver<u64>,
) -> End {
    let mut queued = 0u64;
    loop {
        let request = match receiver.recv::<ToState>().await {
            Ok(r) => r.msg,
            Err(e) if e.is_closed() => return End::PeerClosed,
            Err(e) => return End::Violation(e),
        };
        log_request(conn, &request);
        let pending = match request::classify(request) {
            Action::Write(op) => match store.submit(op).await {
                Ok(pending) => Pending::Write(pending),
                Err(e) => Pending::Ready(Box::new(request::write_reply(conn, Err(e)))),
            },
            Action::Read(read) => {
                if sent.wait_for(|&n| n >= queued).await.is_err() {
                    return End::Stopped;
                }
                Pending::Ready(Box::new(read_off_thread(conn, store, read).await))
            }
        };
        if queue.send(pending).await.is_err() {
            return End::Stopped;
        }
        queued += 1;
    }
}

/// Runs a read on the blocking pool, so a slow disk never stalls the other connections.
async fn read_off_thread(conn: u64, store: &Store, read: Read) -> FromState {
    let store = store.clone();
    tokio::task::spawn_blocking(move || request::run_read(conn, &store, read))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(conn, error = %e, "read task failed");
            FromState::Error(joblet_ipc_proto::RemoteError::internal(
                "the read failed inside stated; see its log",
            ))
        })
}

async fn send_replies(
    conn: u64,
    sender: &Sender,
    mut queue: mpsc::Receiver<Pending>,
    sent: watch::Sender<u64>,
) {
    while let Some(pending) = queue.recv().await {
        let reply = match pending {
            Pending::Ready(reply) => *reply,
            Pending::Write(write) => request::write_reply(conn, write.outcome().await),
        };
        if let Err(e) = send_reply(conn, sender, &reply).await {
            tracing::debug!(conn, error = %e, "cannot send a reply; dropping the connection");
            return;
        }
        sent.send_modify(|n| *n += 1);
    }
}

async fn send_reply(conn: u64, sender: &Sender, reply: &FromState) -> Result<(), IpcError> {
    match sender.send(reply, &[]).await {
        // Replies are sized to fit; if one still does not, the client gets an error in its
        // place so replies stay in step with requests.
        Err(IpcError::Oversized { len, max }) => {
            tracing::error!(
                conn,
                reply = reply.name(),
                len,
                max,
                "reply too large to send"
            );
            let error = joblet_ipc_proto::RemoteError::internal(format!(
                "the reply ({len} bytes) exceeds the frame limit of {max} bytes"
            ));
            sender.send(&FromState::Error(error), &[]).await
        }
        other => other,
    }
}

fn log_request(conn: u64, request: &ToState) {
    let name = request.name();
    match request {
        ToState::Create { record } => {
            tracing::debug!(conn, request = name, job = %record.id, state = %record.state);
        }
        ToState::Transition { job, to, .. } => {
            tracing::debug!(conn, request = name, job = %job, to = %to);
        }
        ToState::Get { job } | ToState::Delete { job } => {
            tracing::debug!(conn, request = name, job = %job);
        }
        ToState::Resolve { prefix } => tracing::debug!(conn, request = name, prefix),
        ToState::List { after } => {
            tracing::debug!(
                conn,
                request = name,
                after = after.as_ref().map(|a| a.as_str())
            );
        }
    }
}
