//! api-frontend → persistd: read and delete stored output.
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
    Delete {
        job: JobId,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromPersistLogs {
    Chunk(LogChunk),
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
        }
    }
}

impl Message for FromPersistLogs {
    fn name(&self) -> &'static str {
        match self {
            FromPersistLogs::Chunk(_) => "Chunk",
            FromPersistLogs::End { .. } => "End",
            FromPersistLogs::Deleted => "Deleted",
            FromPersistLogs::Error(_) => "Error",
        }
    }
}
