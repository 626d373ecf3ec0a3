//! api-frontend → persistd: read and delete stored output, read metric samples.
//!
//! Every chunk has a sequence number, assigned once when persistd stores it. A reader asks
//! from a sequence number and gets history followed by live chunks from one ordered source,
//! so there is no gap and no duplicate at the hand-over; after a broken connection it resumes
//! from the next number it has not seen.
//!
//! A `Read` with `follow` keeps the connection for itself until the output is complete (or
//! the client goes away); open one connection per concurrent reader.

use serde::{Deserialize, Serialize};

use crate::RemoteError;
use crate::codec::Message;
use crate::job::{JobId, Stream};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToPersistLogs {
    Read {
        job: JobId,
        from_seq: u64,
        follow: bool,
    },
    /// Deletes the job's output and metrics.
    Delete { job: JobId },
    /// The job's metric samples with `from_ns <= at_ns <= to_ns` (0 = open), at most `limit`
    /// (0 = all), in time order, then `End`; with `follow`, new samples as they are taken
    /// until the job's output is complete.
    Metrics {
        job: JobId,
        from_ns: u64,
        to_ns: u64,
        limit: u32,
        follow: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromPersistLogs {
    Chunk(LogChunk),
    Metric(MetricSample),
    /// End of this read. `complete` says the job's output is closed for good.
    End {
        next_seq: u64,
        complete: bool,
    },
    Deleted,
    Error(RemoteError),
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub seq: u64,
    pub stream: Stream,
    pub at_ns: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One sample of a job's cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub at_ns: u64,
    /// CPU time used since the job started, nanoseconds.
    pub cpu_usage_ns: u64,
    /// CPU use over the last interval, in percent of one core.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// 0 = no limit.
    pub memory_limit: u64,
    /// Since the job started.
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub pids: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

impl std::fmt::Debug for LogChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LogChunk(seq {} {:?} {} bytes)",
            self.seq,
            self.stream,
            self.data.len()
        )
    }
}

impl Message for ToPersistLogs {
    fn name(&self) -> &'static str {
        match self {
            ToPersistLogs::Read { .. } => "Read",
            ToPersistLogs::Delete { .. } => "Delete",
            ToPersistLogs::Metrics { .. } => "Metrics",
        }
    }
}

impl Message for FromPersistLogs {
    fn name(&self) -> &'static str {
        match self {
            FromPersistLogs::Chunk(_) => "Chunk",
            FromPersistLogs::Metric(_) => "Metric",
            FromPersistLogs::End { .. } => "End",
            FromPersistLogs::Deleted => "Deleted",
            FromPersistLogs::Error(_) => "Error",
        }
    }
}
