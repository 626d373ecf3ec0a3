use std::io;
use std::path::PathBuf;

use joblet_ipc_proto::job::{JobId, Stream};

use super::record::RecordError;
use super::sample_record::SampleRecordError;

/// A failed step of the log store. Messages name the job, the step and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create or secure directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot list {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("job {job}: cannot recover the index after a restart: {source}")]
    Recover { job: JobId, source: io::Error },
    #[error("job {job}: moving {stream:?} output from the pipe to its data file failed: {source}")]
    Splice {
        job: JobId,
        stream: Stream,
        source: io::Error,
    },
    #[error("job {job}: cannot append record {seq} to the index: {source}")]
    AppendIndex {
        job: JobId,
        seq: u64,
        source: io::Error,
    },
    #[error("job {job}: cannot flush the output to disk: {source}")]
    Sync { job: JobId, source: io::Error },
    #[error("job {job}: cannot read chunk {seq}: {source}")]
    Read {
        job: JobId,
        seq: u64,
        source: io::Error,
    },
    #[error("job {job}: index record {seq} is corrupt: {source}")]
    Corrupt {
        job: JobId,
        seq: u64,
        source: RecordError,
    },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("job {job}: cannot open its metric samples after a restart: {source}")]
    MetricRecover { job: JobId, source: io::Error },
    #[error("job {job}: cannot store metric sample {seq}: {source}")]
    MetricAppend {
        job: JobId,
        seq: u64,
        source: io::Error,
    },
    #[error("job {job}: cannot read metric sample {seq}: {source}")]
    MetricRead {
        job: JobId,
        seq: u64,
        source: io::Error,
    },
    #[error("job {job}: metric sample {seq} is corrupt: {source}")]
    MetricCorrupt {
        job: JobId,
        seq: u64,
        source: SampleRecordError,
    },
    #[error("job {job}: cannot drop its oldest metric samples: {source}")]
    MetricCompact { job: JobId, source: io::Error },
    #[error("job {job}: cannot flush its metric samples to disk: {source}")]
    MetricSync { job: JobId, source: io::Error },
}
