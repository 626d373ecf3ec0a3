//! The job records in an embedded redb database, with a write-ahead journal beside it.
//!
//! One table maps the job id (its text, so redb's byte order is id order) to the postcard
//! encoding of its [`JobRecord`]. Reads run in their own read transactions, concurrently with
//! each other and with the writer. Every write goes through one writer thread ([`commit`]),
//! which applies all the writes waiting at that moment in one write transaction and makes
//! them durable with a single append to the [`journal`] (group commit).

mod commit;
mod error;
mod file;
mod journal;
mod read;
mod record;
mod write;

use std::path::Path;
use std::sync::Arc;

use joblet_ipc_proto::MAX_FRAME_LEN;
use joblet_ipc_proto::job::{JobId, JobRecord};
use redb::{Database, TableDefinition};

pub use commit::{CommitStats, PendingWrite, WriterPanicked, WriterThread};
pub use error::{OpenError, StoreError};
pub use read::Page;
pub use write::WriteOp;

/// job id → postcard `JobRecord`.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

/// Room kept in every reply frame for the envelope around the records (variant tag, vector
/// length, `more` flag: at most 12 bytes) with a wide margin.
const FRAME_MARGIN: usize = 1024;

/// The largest encoded record stated keeps, so any record fits in a `Get` reply and at least
/// one fits in every `List` page.
pub const MAX_RECORD_LEN: usize = MAX_FRAME_LEN - FRAME_MARGIN;

/// A handle on the open store; cheap to clone, one per connection.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: commit::Committer,
}

impl Store {
    /// Opens (or creates) the database at `path` and its journal, replays what the journal
    /// holds of an unclean stop, and starts the writer thread. The caller joins the
    /// [`WriterThread`] after dropping every `Store` clone, which closes the database cleanly.
    pub fn open(path: &Path) -> Result<(Store, WriterThread), OpenError> {
        let db = Arc::new(file::open_database(path)?);
        let journal_path = journal::path_for(path);
        let file = file::private_file(&journal_path)?;
        let (journal, replayed) = journal::Journal::recover(&db, file, &journal_path)?;
        if replayed > 0 {
            tracing::info!(frames = replayed, journal = %journal_path.display(),
                "replayed the journal of an unclean stop");
        }
        let (writer, thread) = commit::start(db.clone(), journal)?;
        Ok((Store { db, writer }, thread))
    }

    /// The record of `job`.
    pub fn get(&self, job: &JobId) -> Result<JobRecord, StoreError> {
        read::get(&self.db, job)
    }

    /// The one job whose id starts with `prefix`.
    pub fn resolve(&self, prefix: &str) -> Result<JobId, StoreError> {
        read::resolve(&self.db, prefix)
    }

    /// Records in id order after `after`, as many as fit in one reply frame.
    pub fn list(&self, after: Option<&JobId>) -> Result<Page, StoreError> {
        read::list(&self.db, after)
    }

    /// Queues a write for the next group commit; await the result with
    /// [`PendingWrite::outcome`]. Writes from one caller are applied in the order submitted.
    pub async fn submit(&self, op: WriteOp) -> Result<PendingWrite, StoreError> {
        self.writer.submit(op).await
    }

    /// Submits a write and waits until it is durable (or refused).
    pub async fn write(&self, op: WriteOp) -> Result<(), StoreError> {
        self.submit(op).await?.outcome().await
    }

    /// Counters of the writer, for logs and tests.
    pub fn commit_stats(&self) -> &CommitStats {
        self.writer.stats()
    }

    /// Resolves if the writer thread ends while handles still exist, i.e. it died: the
    /// daemon must then stop, since it can no longer record anything.
    pub async fn writer_stopped(&self) {
        self.writer.stopped().await
    }
}

#[cfg(test)]
mod tests;
