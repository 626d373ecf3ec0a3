//! Serving one `Read`: history from the files, then live chunks as they are stored.
//!
//! History and live come from one ordered source — the index, bounded by the job's published
//! chunk count — so the hand-over has no gap and no duplicate. Each reader reads the files at
//! its own pace and only waits on a `watch` of the count, so a slow reader never slows the
//! pipe reader or the other readers.

use std::pin::Pin;
use std::sync::Arc;

use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogChunk, ToPersistLogs};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::{Received, Receiver, Sender};
use joblet_ipc_proto::{IpcError, RemoteError};
use tracing::error;

use crate::registry::Registry;
use crate::store::{JobLog, StoreError};

/// Chunks read from the files per blocking task.
const BATCH_CHUNKS: u64 = 256;
/// Bytes read from the files per blocking task (stops after the chunk that crosses it).
const BATCH_BYTES: usize = 1 << 20;
/// Chunk buffers a following read keeps while it waits for new output.
const SPARE_WHILE_WAITING: usize = 2;

pub struct Read {
    pub job: JobId,
    pub from_seq: u64,
    pub follow: bool,
}

/// How a `Read` ended, for the connection loop.
pub enum ReadEnd {
    /// Answered; the connection may carry the next request.
    Done,
    /// The client closed the connection (or it broke) during the read.
    ClientGone,
    /// The client sent something it must not send during a read.
    Violation(String),
}

/// Whatever the client sends while a read runs: only its close is legitimate.
pub(crate) type Incoming<'a> =
    Pin<Box<dyn Future<Output = Result<Received<ToPersistLogs>, IpcError>> + Send + 'a>>;

pub async fn serve(
    registry: &Registry,
    sender: &Sender,
    receiver: &mut Receiver,
    read: Read,
) -> ReadEnd {
    let mut incoming: Incoming<'_> = Box::pin(receiver.recv::<ToPersistLogs>());
    match stream(registry, sender, &mut incoming, read).await {
        Ok(()) => ReadEnd::Done,
        Err(end) => end,
    }
}

async fn stream(
    registry: &Registry,
    sender: &Sender,
    incoming: &mut Incoming<'_>,
    read: Read,
) -> Result<(), ReadEnd> {
    let Read {
        job,
        from_seq,
        follow,
    } = read;
    let log = match registry.get(&job) {
        Some(log) => log,
        None if follow => tokio::select! {
            log = registry.wait_for(&job) => log,
            r = incoming.as_mut() => return Err(interrupted(r)),
        },
        None => {
            let err = RemoteError::not_found(format!("no output is stored for job {job}"));
            return send(sender, incoming, FromPersistLogs::Error(err)).await;
        }
    };
    let mut progress = log.subscribe();
    // Without follow, the read covers what was stored when it began, so it always ends.
    let limit = if follow {
        u64::MAX
    } else {
        progress.borrow().chunks
    };
    let mut seq = from_seq;
    // The data buffers of chunks sent, read into again by the next batch.
    let mut spare: Vec<Vec<u8>> = Vec::new();
    loop {
        let p = *progress.borrow_and_update();
        if p.deleted {
            let err = RemoteError::not_found(format!("the output of job {job} was deleted"));
            return send(sender, incoming, FromPersistLogs::Error(err)).await;
        }
        let upto = p.chunks.min(limit);
        if seq < upto {
            let batch = match read_batch(&log, seq, upto - seq, std::mem::take(&mut spare)).await {
                Ok(batch) => batch,
                Err(e) => {
                    error!(%job, seq, error = %e, "cannot read stored output");
                    let err = RemoteError::internal(e.to_string());
                    return send(sender, incoming, FromPersistLogs::Error(err)).await;
                }
            };
            for chunk in batch {
                seq = chunk.seq + 1;
                let msg = FromPersistLogs::Chunk(chunk);
                send_ref(sender, incoming, &msg).await?;
                if let FromPersistLogs::Chunk(sent) = msg {
                    spare.push(sent.data);
                }
            }
            continue;
        }
        if !follow || p.complete {
            let end = FromPersistLogs::End {
                next_seq: seq,
                complete: p.complete && seq >= p.chunks,
            };
            return send(sender, incoming, end).await;
        }
        // Caught up: a few buffers cover what arrives next; a follower waiting a long time
        // should not hold a whole batch of them.
        spare.truncate(SPARE_WHILE_WAITING);
        tokio::select! {
            // The log holds the sender, and we hold the log: this cannot fail.
            _ = progress.changed() => {}
            r = incoming.as_mut() => return Err(interrupted(r)),
        }
    }
}

async fn read_batch(
    log: &Arc<JobLog>,
    from: u64,
    available: u64,
    mut spare: Vec<Vec<u8>>,
) -> Result<Vec<LogChunk>, StoreError> {
    let max_chunks = available.min(BATCH_CHUNKS);
    let job = log.id().clone();
    let log = log.clone();
    // History may be cold on disk: read it off the runtime threads.
    let read = move || log.read_batch_into(from, max_chunks, BATCH_BYTES, &mut spare);
    match tokio::task::spawn_blocking(read).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Read {
            job,
            seq: from,
            source: std::io::Error::other(e),
        }),
    }
}

/// Sends one frame unless the client goes away first (a slow client only stalls itself).
pub(crate) async fn send(
    sender: &Sender,
    incoming: &mut Incoming<'_>,
    msg: FromPersistLogs,
) -> Result<(), ReadEnd> {
    send_ref(sender, incoming, &msg).await
}

/// [`send`], leaving the message to the caller (to reuse its buffers).
async fn send_ref(
    sender: &Sender,
    incoming: &mut Incoming<'_>,
    msg: &FromPersistLogs,
) -> Result<(), ReadEnd> {
    tokio::select! {
        r = sender.send(msg, &[]) => r.map_err(|_| ReadEnd::ClientGone),
        r = incoming.as_mut() => Err(interrupted(r)),
    }
}

/// How a read ends when the client sends something (or goes away) in the middle of it.
pub(crate) fn interrupted(r: Result<Received<ToPersistLogs>, IpcError>) -> ReadEnd {
    match r {
        Ok(req) => ReadEnd::Violation(format!(
            "{} request while a read is in progress (open one connection per reader)",
            joblet_ipc_proto::codec::Message::name(&req.msg)
        )),
        Err(e) if e.is_closed() => ReadEnd::ClientGone,
        Err(e) => ReadEnd::Violation(format!("bad frame during a read: {e}")),
    }
}
