//! The three writes, applied inside the writer's transaction. Each checks everything before it
//! writes, so a refused write leaves the transaction exactly as it found it.

use joblet_ipc_proto::job::{JobId, JobOutcome, JobRecord, JobState};
use redb::{Database, ReadableTable, Table};

use super::{JOBS, StoreError, record};
use crate::machine::{self, Change};

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

/// Creates the tables on a new database, so readers always find them.
pub(super) fn create_tables(db: &Database) -> Result<(), StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| StoreError::storage("write transaction", e))?;
    txn.open_table(JOBS)
        .map_err(|e| StoreError::storage("creating the jobs table", e))?;
    txn.commit().map_err(|e| StoreError::storage("commit", e))
}

/// Applies one write to the open table.
pub(super) fn apply(table: &mut JobsTable<'_>, op: WriteOp) -> Result<(), StoreError> {
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

fn store(table: &mut JobsTable<'_>, record: &JobRecord, bytes: &[u8]) -> Result<(), StoreError> {
    table
        .insert(record.id.as_str(), bytes)
        .map_err(|e| StoreError::storage("insert", e))?;
    Ok(())
}

fn create(table: &mut JobsTable<'_>, record: JobRecord) -> Result<(), StoreError> {
    machine::check_new(&record)?;
    let exists = table
        .get(record.id.as_str())
        .map_err(|e| StoreError::storage("read", e))?
        .is_some();
    if exists {
        return Err(StoreError::AlreadyExists(record.id));
    }
    let bytes = record::encode(&record)?;
    store(table, &record, &bytes)
}

fn transition(
    table: &mut JobsTable<'_>,
    job: &JobId,
    to: JobState,
    at_ns: u64,
    outcome: Option<JobOutcome>,
) -> Result<(), StoreError> {
    let mut record = load(table, job)?;
    match machine::transition(&mut record, to, at_ns, outcome)? {
        Change::AlreadyThere => Ok(()),
        Change::Moved => {
            let bytes = record::encode(&record)?;
            store(table, &record, &bytes)
        }
    }
}

fn delete(table: &mut JobsTable<'_>, job: &JobId) -> Result<(), StoreError> {
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
    Ok(())
}
