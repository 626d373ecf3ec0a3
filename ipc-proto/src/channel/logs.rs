//! api-frontend → persistd: read and delete stored output, read metric samples.
//!
//! Every chunk has a sequence number, assigned once when persistd stores it. A reader asks
//! from a sequence number and gets history followed by live chunks from one ordered source,
//! so there is no gap and no duplicate at the hand-over; after a broken connection it resumes
//! from the next number it has not seen.
//!
//! A `Read` with `follow` keeps the connection for itself until the output is complete (or
//! the client goes away); open one connection per concurrent reader.
//!
//! persistd does not copy the output into frames. A read of a stored log starts with
//! [`FromPersistLogs::Files`], the job's two data files opened read-only, and goes on with
//! [`LogRange`]s: which bytes of which file are which chunks. The reader `pread`s them.
//! The reader already receives every byte of any job's output it asks for, so a read-only
//! descriptor of the same file gives it nothing more; it still stops at `Error` when the
//! output is deleted.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::job::{JobId, Stream};
use crate::{MAX_LOG_RANGE, RemoteError};

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
    /// Carries two fds: the job's `stdout` and `stderr` data files, in that order, opened
    /// read-only. Sent once, first, by a `Read` of a job whose output exists; every
    /// [`LogRange`] of the read refers to these files.
    Files,
    /// The next chunks of a `Read`, as a place in one of the [`FromPersistLogs::Files`].
    Range(LogRange),
    Metric(MetricSample),
    /// End of this read. `complete` says the job's output is closed for good.
    End {
        next_seq: u64,
        complete: bool,
    },
    Deleted,
    Error(RemoteError),
}

/// Chunks `first_seq..=last_seq` of one stream are the bytes `offset..offset + len` of that
/// stream's data file. Consecutive chunks whose bytes follow each other in the file are one
/// range, up to [`MAX_LOG_RANGE`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRange {
    pub first_seq: u64,
    pub last_seq: u64,
    pub stream: Stream,
    /// When the last of the chunks was stored.
    pub at_ns: u64,
    pub offset: u64,
    /// `1..=MAX_LOG_RANGE`.
    pub len: u32,
}

impl LogRange {
    /// The sequence number after this range's last chunk.
    pub fn next_seq(&self) -> u64 {
        self.last_seq.saturating_add(1)
    }

    /// Checks the bounds a reader relies on: a length it can allocate, at least one chunk,
    /// and an end that fits in a file offset.
    pub fn validate(&self) -> Result<(), String> {
        if self.len == 0 || self.len as usize > MAX_LOG_RANGE {
            return Err(format!(
                "range length {} is outside 1..={MAX_LOG_RANGE}",
                self.len
            ));
        }
        if self.last_seq < self.first_seq {
            return Err(format!(
                "range ends at chunk {} before it starts at {}",
                self.last_seq, self.first_seq
            ));
        }
        if self
            .offset
            .checked_add(u64::from(self.len))
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(format!(
                "range offset {} is past any file's end",
                self.offset
            ));
        }
        Ok(())
    }
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
    fn expected_fds(&self) -> usize {
        match self {
            FromPersistLogs::Files => 2,
            _ => 0,
        }
    }
    fn validate(&self) -> Result<(), String> {
        match self {
            FromPersistLogs::Range(r) => r.validate(),
            _ => Ok(()),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            FromPersistLogs::Files => "Files",
            FromPersistLogs::Range(_) => "Range",
            FromPersistLogs::Metric(_) => "Metric",
            FromPersistLogs::End { .. } => "End",
            FromPersistLogs::Deleted => "Deleted",
            FromPersistLogs::Error(_) => "Error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IpcError;
    use crate::codec::{self, decode, encode};

    fn range(first_seq: u64, last_seq: u64, len: u32) -> LogRange {
        LogRange {
            first_seq,
            last_seq,
            stream: Stream::Stdout,
            at_ns: 1,
            offset: 10,
            len,
        }
    }

    #[test]
    fn ranges_within_bounds_pass() {
        for r in [range(0, 0, 1), range(3, 19, MAX_LOG_RANGE as u32)] {
            assert_eq!(r.validate(), Ok(()));
            let msg = FromPersistLogs::Range(r);
            assert!(codec::check(&msg, 0).is_ok());
            let mut buf = Vec::new();
            encode(&msg, &mut buf).unwrap();
            assert!(matches!(decode(&buf), Ok(FromPersistLogs::Range(back)) if back == r));
        }
    }

    #[test]
    fn ranges_out_of_bounds_are_malformed() {
        let mut past_end = range(0, 0, 5);
        past_end.offset = i64::MAX as u64 - 2;
        for (r, why) in [
            (range(0, 0, 0), "length 0"),
            (range(0, 0, MAX_LOG_RANGE as u32 + 1), "length"),
            (range(5, 4, 1), "before it starts"),
            (past_end, "past any file"),
        ] {
            let err = codec::check(&FromPersistLogs::Range(r), 0).unwrap_err();
            assert!(
                matches!(&err, IpcError::Malformed(m) if m.contains(why) && m.starts_with("Range")),
                "{r:?}: {err}"
            );
        }
    }

    #[test]
    fn files_carry_exactly_two_fds() {
        assert!(codec::check(&FromPersistLogs::Files, 2).is_ok());
        for got in [0, 1, 3] {
            assert!(matches!(
                codec::check(&FromPersistLogs::Files, got),
                Err(IpcError::UnexpectedFds { expected: 2, .. })
            ));
        }
        let end = FromPersistLogs::End {
            next_seq: 0,
            complete: true,
        };
        assert!(codec::check(&FromPersistLogs::Range(range(0, 0, 1)), 2).is_err());
        assert!(codec::check(&end, 1).is_err());
    }
}
