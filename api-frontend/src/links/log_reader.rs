//! One open read of a job's stored output from persistd.
//!
//! persistd does not send the output's bytes: it sends the job's two data files once
//! (read-only descriptors, [`FromPersistLogs::Files`]), then ranges of them
//! ([`FromPersistLogs::Range`]). This reads each range with one `pread`, off the runtime
//! threads (history may be cold on disk), and yields it as a [`LogChunk`]. Anything out of
//! protocol (a range before the files, a range that does not start at the next chunk, a file
//! shorter than its range) ends the read with an error naming it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use joblet_ipc_proto::channel::logs::{FromPersistLogs, LogRange};
use joblet_ipc_proto::codec::Message;
use joblet_ipc_proto::job::Stream;
use joblet_ipc_proto::tokio::Conn;
use joblet_ipc_proto::{IpcError, RemoteError};
use tokio::task::{JoinError, JoinHandle};

use super::logs::IdleConns;

/// Chunks `..=seq` of one stream, read: the bytes of one [`LogRange`].
#[derive(Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// The sequence number of the last chunk these bytes hold; the read goes on at `seq + 1`.
    pub seq: u64,
    pub stream: Stream,
    /// When the last of the chunks was stored.
    pub at_ns: u64,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for LogChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LogChunk(..={} {:?} {} bytes)",
            self.seq,
            self.stream,
            self.data.len()
        )
    }
}

/// What a read yields.
#[derive(Debug)]
pub enum ReadEvent {
    Chunk(LogChunk),
    /// End of this read; `complete` says the job's output is closed for good.
    End {
        next_seq: u64,
        complete: bool,
    },
    /// persistd answered the read with an error (the output is not stored, or was deleted).
    Error(RemoteError),
}

/// Why a read cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    /// The connection broke or carried a bad frame; the read may resume on a new one.
    #[error(transparent)]
    Link(#[from] IpcError),
    #[error("persistd sent the log files twice in one read")]
    FilesTwice,
    #[error("persistd sent chunks {first}..={last} before the log files")]
    RangeBeforeFiles { first: u64, last: u64 },
    #[error("persistd sent chunks {first}..={last} where chunk {expected} was next")]
    OutOfOrder {
        expected: u64,
        first: u64,
        last: u64,
    },
    #[error("persistd answered a log read with {0}")]
    Unexpected(&'static str),
    #[error(
        "the stored {stream:?} file ends before chunks {first}..={last} (bytes {offset}..+{len})"
    )]
    ShortFile {
        stream: Stream,
        first: u64,
        last: u64,
        offset: u64,
        len: u32,
    },
    #[error("cannot read chunks {first}..={last} from the stored {stream:?} file: {source}")]
    Read {
        stream: Stream,
        first: u64,
        last: u64,
        source: io::Error,
    },
}

impl LogReadError {
    /// True when only the connection failed, so a new read may well succeed; every other
    /// error is persistd breaking the protocol, or its files, and would happen again.
    pub fn is_link(&self) -> bool {
        matches!(self, LogReadError::Link(_))
    }
}

/// The two data files of a read: `[stdout, stderr]`.
type Files = Arc<[File; 2]>;

pub struct LogReader {
    conn: Conn,
    /// Where the connection goes once the read is over, for the next read.
    idle: Option<IdleConns>,
    /// persistd ended the read (`End` or `Error`) and waits for the next request.
    over: bool,
    files: Option<Files>,
    /// The first chunk of the next range.
    next_seq: u64,
    /// The range being read. Kept here, not in `next`'s future, so that a `next` dropped
    /// half way (it is raced against other events in `select!`) loses nothing: the next call
    /// picks the read up where it was.
    in_flight: Option<InFlight>,
}

struct InFlight {
    range: LogRange,
    task: JoinHandle<Result<Vec<u8>, LogReadError>>,
}

impl LogReader {
    /// A read persistd was asked for on `conn`, from chunk `from_seq` on.
    pub fn new(conn: Conn, from_seq: u64) -> LogReader {
        LogReader {
            conn,
            idle: None,
            over: false,
            files: None,
            next_seq: from_seq,
            in_flight: None,
        }
    }

    /// The connection will be offered to `idle` by [`LogReader::release`].
    pub fn returning_to(mut self, idle: IdleConns) -> LogReader {
        self.idle = Some(idle);
        self
    }

    /// Gives the connection back for another read if persistd ended this one; otherwise
    /// (a read cut short, a broken link) it is closed, which tells persistd to stop.
    pub fn release(self) {
        if let (true, Some(idle)) = (self.over && self.in_flight.is_none(), self.idle) {
            idle.put(self.conn);
        }
    }

    /// The next chunk, or the read's end. Cancel-safe: dropping the future before it is ready
    /// loses no message and no chunk.
    pub async fn next(&mut self) -> Result<ReadEvent, LogReadError> {
        loop {
            if let Some(read) = &mut self.in_flight {
                let joined = (&mut read.task).await;
                let range = read.range;
                self.in_flight = None;
                return self.finish(range, joined);
            }
            // Receiving is cancel-safe: a frame is taken off the socket only once it is there.
            let received = self.conn.recv::<FromPersistLogs>().await?;
            match received.msg {
                FromPersistLogs::Files => self.take_files(received.fds)?,
                FromPersistLogs::Range(range) => self.start(range)?,
                FromPersistLogs::End { next_seq, complete } => {
                    self.over = true;
                    return Ok(ReadEvent::End { next_seq, complete });
                }
                FromPersistLogs::Error(e) => {
                    self.over = true;
                    return Ok(ReadEvent::Error(e));
                }
                other => return Err(LogReadError::Unexpected(other.name())),
            }
        }
    }

    fn take_files(&mut self, fds: Vec<OwnedFd>) -> Result<(), LogReadError> {
        if self.files.is_some() {
            return Err(LogReadError::FilesTwice);
        }
        // The transport checked the count against the message; this only names them.
        let [stdout, stderr] = <[OwnedFd; 2]>::try_from(fds).map_err(|fds| {
            LogReadError::Link(IpcError::UnexpectedFds {
                message: "Files",
                expected: 2,
                got: fds.len(),
            })
        })?;
        self.files = Some(Arc::new([File::from(stdout), File::from(stderr)]));
        Ok(())
    }

    /// Checks `range` and starts reading it, off the runtime threads (history may be cold on
    /// disk).
    fn start(&mut self, range: LogRange) -> Result<(), LogReadError> {
        let (first, last) = (range.first_seq, range.last_seq);
        let Some(files) = self.files.clone() else {
            return Err(LogReadError::RangeBeforeFiles { first, last });
        };
        if first != self.next_seq {
            return Err(LogReadError::OutOfOrder {
                expected: self.next_seq,
                first,
                last,
            });
        }
        let task = tokio::task::spawn_blocking(move || read_range(&files, &range));
        self.in_flight = Some(InFlight { range, task });
        Ok(())
    }

    fn finish(
        &mut self,
        range: LogRange,
        joined: Result<Result<Vec<u8>, LogReadError>, JoinError>,
    ) -> Result<ReadEvent, LogReadError> {
        let data = joined.map_err(|e| LogReadError::Read {
            stream: range.stream,
            first: range.first_seq,
            last: range.last_seq,
            source: io::Error::other(e),
        })??;
        self.next_seq = range.next_seq();
        Ok(ReadEvent::Chunk(LogChunk {
            seq: range.last_seq,
            stream: range.stream,
            at_ns: range.at_ns,
            data,
        }))
    }
}

/// The bytes of `range` (its bounds were checked when its frame was received). Blocking.
///
/// Read into the vector's uninitialised capacity (std's `read_to_end` does so safely) rather
/// than a zero-filled one: zeroing 1 MiB per range was 4 % of the api's time while streaming.
/// That reads at the file's offset, which is safe to move: the descriptors are this reader's
/// own (persistd opens them for each read) and it reads one range at a time.
fn read_range(files: &[File; 2], range: &LogRange) -> Result<Vec<u8>, LogReadError> {
    let mut file = match range.stream {
        Stream::Stdout => &files[0],
        Stream::Stderr => &files[1],
    };
    let len = range.len as usize;
    let mut data = Vec::with_capacity(len);
    let read = file
        .seek(SeekFrom::Start(range.offset))
        .and_then(|_| file.take(len as u64).read_to_end(&mut data));
    match read {
        Ok(n) if n == len => Ok(data),
        Ok(_) => Err(LogReadError::ShortFile {
            stream: range.stream,
            first: range.first_seq,
            last: range.last_seq,
            offset: range.offset,
            len: range.len,
        }),
        Err(source) => Err(LogReadError::Read {
            stream: range.stream,
            first: range.first_seq,
            last: range.last_seq,
            source,
        }),
    }
}

#[cfg(test)]
#[path = "log_reader_tests.rs"]
mod tests;
