//! The single writer of a job's log: moves bytes from a pipe into a data file with
//! `splice(2)`, then appends the index record and publishes the new chunk count.
//!
//! Bytes never pass through user space: what the kernel moved is in the file, what it did not
//! is still in the pipe, whatever happens to this process. Order matters for recovery: data
//! first, index second (see [`super::recover`]).

use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use joblet_ipc_proto::MAX_LOG_CHUNK;
use joblet_ipc_proto::job::{JobId, Stream};
use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};

use super::error::StoreError;
use super::job_log::{JobLog, WriterState, stream_index};
use super::record::{RECORD_LEN, Record};

/// The result of one [`LogWriter::append_from_pipe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// One chunk of `len` bytes was stored as `seq`.
    Stored { seq: u64, len: usize },
    /// The pipe is empty but still has writers.
    WouldBlock,
    /// The pipe is empty and has no writers left.
    Eof,
}

/// Holds a job's writer slot; dropping it unfinished gives the slot back, so the job can be
/// attached again.
pub struct LogWriter {
    log: Arc<JobLog>,
    state: WriterState,
    finished: bool,
}

impl LogWriter {
    pub(crate) fn new(log: Arc<JobLog>, state: WriterState) -> LogWriter {
        LogWriter {
            log,
            state,
            finished: false,
        }
    }

    pub fn job(&self) -> &JobId {
        self.log.id()
    }

    pub fn log(&self) -> &Arc<JobLog> {
        &self.log
    }

    /// Moves up to [`MAX_LOG_CHUNK`] bytes from `pipe` (a non-blocking pipe read end) into
    /// `stream`'s data file and indexes them.
    ///
    /// On error nothing is lost: either the bytes are still in the pipe (the splice failed) or
    /// they are in the data file with their record pending, written first by the next call.
    pub fn append_from_pipe(
        &mut self,
        stream: Stream,
        pipe: BorrowedFd<'_>,
    ) -> Result<Append, StoreError> {
        self.write_pending()?;
        let s = stream_index(stream);
        let file = &self.log.files.data[s];
        let start = self.state.ends[s];
        let mut offset =
            i64::try_from(start).map_err(|_| self.splice_error(stream, Errno::EFBIG))?;
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        let moved = loop {
            match splice(pipe, None, file, Some(&mut offset), MAX_LOG_CHUNK, flags) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        let len = match moved {
            Ok(0) => return Ok(Append::Eof),
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(Append::WouldBlock),
            Err(e) => return Err(self.splice_error(stream, e)),
        };
        self.state.ends[s] = start + len as u64;
        let seq = self.state.next_seq;
        self.state.pending = Some(Record::Chunk {
            stream,
            offset: start,
            len: len as u32,
            at_ns: crate::clock::now_ns(),
        });
        self.write_pending()?;
        Ok(Append::Stored { seq, len })
    }

    /// Makes the output durable and writes the end record: after this returns `Ok`, the
    /// spawner may close its copies of the pipes. Blocking (fsync); call it off the runtime.
    ///
    /// Followers are told the output is complete before the syncs: every byte is already in
    /// the page cache and indexed, so they can read it all; the syncs are for the stored
    /// history after a power cut, which no follower waits on. The end record still goes to the
    /// index only after the data is on disk (recovery trusts a log that ends with it).
    pub fn finish(&mut self) -> Result<(), StoreError> {
        self.write_pending()?;
        self.log.progress.send_modify(|p| p.complete = true);
        let sync_err = |source| StoreError::Sync {
            job: self.log.id().clone(),
            source,
        };
        for (data, stored) in self.log.files.data.iter().zip(self.state.ends) {
            // An empty file has nothing to lose (the open after a crash recreates a missing
            // one empty), and its sync is a write to the disk that a job's own commits in
            // stated could queue behind.
            if stored > 0 {
                data.sync_data().map_err(sync_err)?;
            }
        }
        let end = Record::End {
            at_ns: crate::clock::now_ns(),
        };
        self.write_record(&end)?;
        self.log.files.index.sync_data().map_err(sync_err)?;
        self.log.sync_new_dir()?;
        self.finished = true;
        Ok(())
    }

    /// Writes the record of the last spliced chunk, if it is not written yet.
    fn write_pending(&mut self) -> Result<(), StoreError> {
        let Some(rec) = self.state.pending else {
            return Ok(());
        };
        self.write_record(&rec)?;
        self.state.pending = None;
        self.state.next_seq += 1;
        let chunks = self.state.next_seq;
        self.log.progress.send_modify(|p| p.chunks = chunks);
        Ok(())
    }

    /// Writes `rec` at the next index position. A failed or partial write is simply redone
    /// at the same offset by the next attempt.
    fn write_record(&self, rec: &Record) -> Result<(), StoreError> {
        let seq = self.state.next_seq;
        self.log
            .files
            .index
            .write_all_at(&rec.encode(), seq * RECORD_LEN as u64)
            .map_err(|source| StoreError::AppendIndex {
                job: self.log.id().clone(),
                seq,
                source,
            })
    }

    fn splice_error(&self, stream: Stream, e: Errno) -> StoreError {
        StoreError::Splice {
            job: self.log.id().clone(),
            stream,
            source: e.into(),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let state = (!self.finished).then(|| self.state.clone());
        self.log.release_writer(state);
    }
}
