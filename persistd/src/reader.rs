//! Serving one `Read`: history from the files, then live chunks as they are stored.
//!
//! History and live come from one ordered source — the index, bounded by the job's published
//! chunk count — so the hand-over has no gap and no duplicate. Each reader reads the index at
//! its own pace and only waits on a `watch` of the count, so a slow reader never slows the
//! pipe reader or the other readers.
//!
//! The output itself is not copied here: the client gets the two data files (opened again,
//! read-only) once, then ranges of them (`LogRange`), and reads the bytes itself.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;

use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogRange, ToPersistLogs};
use joblet_ipc_proto::job::JobId;
use joblet_ipc_proto::tokio::{Received, Receiver, Sender};
use joblet_ipc_proto::{IpcError, RemoteError};
use tracing::error;

use crate::registry::Registry;
use crate::store::{JobLog, StoreError};

/// Index records read per blocking task (32 KiB of index; up to 64 MiB of output).
const BATCH_CHUNKS: u64 = 1024;

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
        Ok(Some(log)) => log,
        Err(e) => return send(sender, incoming, unreadable(&job, "output", &e)).await,
        Ok(None) if follow => tokio::select! {
            log = registry.wait_for(&job) => match log {
                Ok(log) => log,
                Err(e) => return send(sender, incoming, unreadable(&job, "output", &e)).await,
            },
            r = incoming.as_mut() => return Err(interrupted(r)),
        },
        Ok(None) => {
            let err = RemoteError::not_found(format!("no output is stored for job {job}"));
            return send(sender, incoming, FromPersistLogs::Error(err)).await;
        }
    };
    // The first message: the files every range refers to. Ours are closed once sent; the
    // client keeps its own copies.
    let files = match open_files(&log).await {
        Ok(files) => files,
        Err(reply) => return send(sender, incoming, reply).await,
    };
    let fds = [files[0].as_fd(), files[1].as_fd()];
    send_with(sender, incoming, &FromPersistLogs::Files, &fds).await?;
    drop(files);
    let mut progress = log.subscribe();
    // Without follow, the read covers what was stored when it began, so it always ends.
    let limit = if follow {
        u64::MAX
    } else {
        progress.borrow().chunks
    };
    let mut seq = from_seq;
    loop {
        let p = *progress.borrow_and_update();
        if p.deleted {
            return send(sender, incoming, deleted(&job)).await;
        }
        let upto = p.chunks.min(limit);
        if seq < upto {
            let ranges = match read_ranges(&log, seq, upto - seq).await {
                Ok(ranges) => ranges,
                Err(e) => {
                    error!(%job, seq, error = %e, "cannot read the stored output's index");
                    let err = RemoteError::internal(e.to_string());
                    return send(sender, incoming, FromPersistLogs::Error(err)).await;
                }
            };
            for range in ranges {
                seq = range.next_seq();
                send(sender, incoming, FromPersistLogs::Range(range)).await?;
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
        tokio::select! {
            // The log holds the sender, and we hold the log: this cannot fail.
            _ = progress.changed() => {}
            r = incoming.as_mut() => return Err(interrupted(r)),
        }
    }
}

fn deleted(job: &JobId) -> FromPersistLogs {
    FromPersistLogs::Error(RemoteError::not_found(format!(
        "the output of job {job} was deleted"
    )))
}

/// The job's data files, opened read-only for the client; or the error that ends the read.
async fn open_files(log: &Arc<JobLog>) -> Result<[File; 2], FromPersistLogs> {
    let job = log.id().clone();
    let opened = {
        let log = log.clone();
        // Opening may wait on a cold disk: off the runtime threads.
        tokio::task::spawn_blocking(move || log.open_data_readonly()).await
    };
    let e = match opened {
        Ok(Ok(files)) => return Ok(files),
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("the task opening the output files failed: {e}"),
    };
    // Deleted between the lookup and the open: say so, as the read would after it.
    if log.progress().deleted {
        return Err(deleted(&job));
    }
    error!(%job, error = %e, "cannot open the stored output for a reader");
    Err(FromPersistLogs::Error(RemoteError::internal(e)))
}

async fn read_ranges(
    log: &Arc<JobLog>,
    from: u64,
    available: u64,
) -> Result<Vec<LogRange>, StoreError> {
    let max_chunks = available.min(BATCH_CHUNKS);
    let job = log.id().clone();
    let log = log.clone();
    // The index may be cold on disk: read it off the runtime threads.
    match tokio::task::spawn_blocking(move || log.read_ranges(from, max_chunks)).await {
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
    send_with(sender, incoming, &msg, &[]).await
}

/// [`send`], with `fds` attached.
async fn send_with(
    sender: &Sender,
    incoming: &mut Incoming<'_>,
    msg: &FromPersistLogs,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ReadEnd> {
    tokio::select! {
        r = sender.send(msg, fds) => r.map_err(|_| ReadEnd::ClientGone),
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

/// The reply for a job whose stored files (its `what`) persistd could not open.
pub(crate) fn unreadable(job: &JobId, what: &str, e: &StoreError) -> FromPersistLogs {
    error!(%job, error = %e, "cannot open the job's stored files");
    FromPersistLogs::Error(RemoteError::internal(format!(
        "cannot open the stored {what} of job {job}: {e}"
    )))
}
