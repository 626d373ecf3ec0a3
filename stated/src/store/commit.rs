//! Group commit: one writer thread owns every write transaction.
//!
//! A durable commit costs an fsync (milliseconds), a write itself microseconds. So the writer
//! takes the first waiting write, then everything else already queued (up to [`MAX_BATCH`]),
//! applies them in queue order in one write transaction, makes what they changed durable with
//! one journal append ([`super::journal`]), commits, and only then answers each. Under load the
//! cost of the sync is shared by the whole batch; alone, a write waits for just its own. No
//! write is ever acknowledged, nor seen by a reader, before it is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::journal::Journal;
use super::write::{self, WriteOp};
use super::{JOBS, OpenError, StoreError};

/// Writes that may wait for the writer before submitters are slowed down.
const QUEUE_DEPTH: usize = 4096;
/// Most writes in one transaction, so one batch cannot delay its answers unboundedly.
const MAX_BATCH: usize = 1024;

type Reply = Result<(), StoreError>;

struct Request {
    op: WriteOp,
    reply: oneshot::Sender<Reply>,
}

/// Counters of the writer since start.
#[derive(Debug, Default)]
pub struct CommitStats {
    commits: AtomicU64,
    writes: AtomicU64,
    failed_batches: AtomicU64,
    checkpoints: AtomicU64,
}

impl CommitStats {
    /// Durable commits done.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    /// Writes answered after a successful commit (applied or refused).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
    /// Batches lost to a storage failure (every write in them was answered with an error).
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }
    /// Durable redb commits that emptied the journal, the one at start excluded.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }
}

/// The submitting side, held by every [`super::Store`] clone.
#[derive(Clone)]
pub(super) struct Committer {
    tx: mpsc::Sender<Request>,
    stats: Arc<CommitStats>,
}

impl Committer {
    pub(super) async fn submit(&self, op: WriteOp) -> Result<PendingWrite, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { op, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(PendingWrite(rx))
    }

    pub(super) fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Resolves when the writer thread has ended (it only does once every handle is gone, or
    /// if it died).
    pub(super) async fn stopped(&self) {
        self.tx.closed().await
    }
}

/// A write queued for the next commit.
pub struct PendingWrite(oneshot::Receiver<Reply>);

impl PendingWrite {
    /// Waits until the write is durable, or refused.
    pub async fn outcome(self) -> Result<(), StoreError> {
        self.0.await.unwrap_or(Err(StoreError::WriterStopped))
    }
}

/// The writer thread; join it after every store handle is dropped.
pub struct WriterThread(JoinHandle<()>);

#[derive(Debug, thiserror::Error)]
#[error("the store's writer thread panicked")]
pub struct WriterPanicked;

impl WriterThread {
    /// Waits for the writer to finish the writes still queued and end.
    pub fn join(self) -> Result<(), WriterPanicked> {
        self.0.join().map_err(|_| WriterPanicked)
    }
}

pub(super) fn start(
    db: Arc<Database>,
    journal: Journal,
) -> Result<(Committer, WriterThread), OpenError> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let stats = Arc::new(CommitStats::default());
    let thread_stats = stats.clone();
    let handle = std::thread::Builder::new()
        .name("stated-writer".into())
        .spawn(move || run(&db, journal, rx, &thread_stats))
        .map_err(OpenError::Writer)?;
    Ok((Committer { tx, stats }, WriterThread(handle)))
}

fn run(db: &Database, mut journal: Journal, mut rx: mpsc::Receiver<Request>, stats: &CommitStats) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<oneshot::Sender<Reply>>) =
            batch.drain(..).map(|r| (r.op, r.reply)).unzip();
        let Some(results) = commit_batch(db, &mut journal, ops, stats) else {
            // Dropping the replies answers each with WriterStopped; the daemon stops.
            return;
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A client that went away no longer wants its answer; the write stands.
            let _ = reply.send(result);
        }
    }
    // A clean stop leaves nothing to replay: the database alone is the state.
    if let Err(e) = journal.checkpoint_alone(db) {
        tracing::warn!(error = %e, "no checkpoint at stop; the next start replays the journal");
    }
    tracing::debug!("writer stopped: no store handle left");
}

/// Applies and commits one batch; answers every write with its own result, or all of them
/// with the storage error that lost the batch. `None` when the writer must stop: a failed
/// batch may have left a frame in the journal, and only a checkpoint can make it dead. Its
/// writes are then answered `WriterStopped`, an unknown outcome (the next start may replay
/// them), as for any write in flight when the daemon dies; redb refuses every transaction
/// after an I/O error until it is reopened, so that is what a storage failure comes to.
fn commit_batch(
    db: &Database,
    journal: &mut Journal,
    ops: Vec<WriteOp>,
    stats: &CommitStats,
) -> Option<Vec<Reply>> {
    let count = ops.len();
    let started = Instant::now();
    match try_commit(db, journal, ops, stats) {
        Ok(results) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(count as u64, Ordering::Relaxed);
            tracing::debug!(
                writes = count,
                micros = started.elapsed().as_micros() as u64,
                "group commit"
            );
            Some(results)
        }
        Err(e) => {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(writes = count, error = %e, "batch failed; none of its writes was saved");
            if let Err(e) = journal.checkpoint_alone(db) {
                tracing::error!(error = %e, "cannot checkpoint after a failed batch; the writer stops");
                return None;
            }
            Some(vec![Err(e); count])
        }
    }
}

fn try_commit(
    db: &Database,
    journal: &mut Journal,
    ops: Vec<WriteOp>,
    stats: &CommitStats,
) -> Result<Vec<Reply>, StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(|e| StoreError::storage("write transaction", e))?;
    let mut results = Vec::with_capacity(ops.len());
    let mut changes = Vec::new();
    {
        let mut table = txn
            .open_table(JOBS)
            .map_err(|e| StoreError::storage("opening the jobs table", e))?;
        for op in ops {
            match write::apply(&mut table, op) {
                // The transaction may be half-changed: drop it (which aborts it) and fail all.
                Err(e @ StoreError::Storage { .. }) => return Err(e),
                Ok(change) => {
                    changes.extend(change);
                    results.push(Ok(()));
                }
                Err(refused) => results.push(Err(refused)),
            }
        }
    }
    if changes.is_empty() {
        // Every write was refused or changed nothing: dropping the transaction aborts it.
        return Ok(results);
    }
    let frame = journal.frame(&changes)?;
    if journal.fits(&frame) {
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::storage("commit", e))?;
        journal.append(&frame)?;
        txn.commit().map_err(|e| StoreError::storage("commit", e))?;
    } else {
        journal.checkpoint(txn)?;
        stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
    Ok(results)
}
