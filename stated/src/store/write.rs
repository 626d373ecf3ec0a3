//! The three writes, applied inside the writer's transaction. Each checks everything before it
//! writes, so a refused write leaves the transaction exactly as it found it.

use joblet_ipc_proto::job::{JobId, JobOutcome, JobRecord, JobState};
use redb::{ReadableTable, Table};

use super::journal::Change;
use super::{StoreError, record};
use crate::machine::{self, Change as Moved};

/// A write request, as the writer thread applies it.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Boxed: a record is large next to the other requests.
    Create(Box<JobRecord>),
    Transition {
        job: JobId,
        to: JobState,
        at_ns: u64,
        outcome: Option<JobOutcome>,
    },
    Delete(JobId),
}

impl WriteOp {
    pub fn job(&self) -> &JobId {
        match self {
            WriteOp::Create(r) => &r.id,
            WriteOp::Transition { job, .. } | WriteOp::Delete(job) => job,
        }
    }
}

pub(super) type JobsTable<'txn> = Table<'txn, &'static str, &'static [u8]>;

/// Applies one write to the open table; returns what it changed, for the journal.
pub(super) fn apply(table: &mut JobsTable<'_>, op: WriteOp) -> Result<Option<Change>, StoreError> {
    match op {
        WriteOp::Create(record) => create(table, *record),
        WriteOp::Transition {
            job,
            to,
            at_ns,
            outcome,
        } => transition(table, &job, to, at_ns, outcome),
        WriteOp::Delete(job) => delete(table, &job),
    }
}

fn load(table: &JobsTable<'_>, job: &JobId) -> Result<JobRecord, StoreError> {
    let value = table
        .get(job.as_str())
        .map_err(|e| StoreError::storage("read", e))?
        .ok_or_else(|| StoreError::NotFound(job.clone()))?;
    record::decode(job.as_str(), value.value())
}

fn store(table: &mut JobsTable<'_>, record: &JobRecord) -> Result<Option<Change>, StoreError> {
    let bytes = record::encode(record)?;
    table
        .insert(record.id.as_str(), bytes.as_slice())
        .map_err(|e| StoreError::storage("insert", e))?;
    Ok(Some(Change::Put(record.id.as_str().to_owned(), bytes)))
}

fn create(table: &mut JobsTable<'_>, record: JobRecord) -> Result<Option<Change>, StoreError> {
    machine::check_new(&record)?;
    let exists = table
        .get(record.id.as_str())
        .map_err(|e| StoreError::storage("read", e))?
        .is_some();
    if exists {
        return Err(StoreError::AlreadyExists(record.id));
    }
    store(table, &record)
}

fn transition(
    table: &mut JobsTable<'_>,
    job: &JobId,
    to: JobState,
    at_ns: u64,
    outcome: Option<JobOutcome>,
) -> Result<Option<Change>, StoreError> {
    let mut record = load(table, job)?;
    match machine::transition(&mut record, to, at_ns, outcome)? {
        Moved::AlreadyThere => Ok(None),
        Moved::Moved => store(table, &record),
    }
}

fn delete(table: &mut JobsTable<'_>, job: &JobId) -> Result<Option<Change>, StoreError> {
    let record = load(table, job)?;
    if !record.state.is_terminal() {
        return Err(StoreError::NotFinished {
            job: job.clone(),
            state: record.state,
        });
    }
    table
        .remove(job.as_str())
        .map_err(|e| StoreError::storage("remove", e))?;
    Ok(Some(Change::Remove(job.as_str().to_owned())))
}
