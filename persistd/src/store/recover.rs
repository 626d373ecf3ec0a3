//! Bringing a job's files back to a consistent state after a crash.
//!
//! The writer always moves data into a data file first and appends its index record second.
//! A crash can therefore leave (a) a torn last index record and (b) data bytes that no record
//! covers yet. Recovery drops (a) and indexes (b), so every byte taken from the pipe is in the
//! log exactly once. Records after the first invalid one are dropped too; the bytes they
//! covered become unindexed tail and are indexed again, so nothing is lost even then.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use joblet_ipc_proto::MAX_LOG_CHUNK;

use super::job_log::{Files, STREAMS, WriterState, stream_index};
use super::record::{RECORD_LEN, Record};

/// What recovery had to repair.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Index bytes cut off (a torn record, or records that did not match the data).
    pub dropped_index_bytes: u64,
    /// Records added for data that had no record (its index write was lost).
    pub tail_records: u64,
    /// Bytes of torn or invalid tail cut off the metric samples.
    pub dropped_metric_bytes: u64,
}

impl RecoveryReport {
    pub fn repaired(&self) -> bool {
        self.dropped_index_bytes > 0 || self.tail_records > 0 || self.dropped_metric_bytes > 0
    }
}

pub(crate) struct Recovered {
    pub chunks: u64,
    pub complete: bool,
    /// `None` when the output is complete: there is nothing left to write.
    pub writer: Option<WriterState>,
    pub report: RecoveryReport,
}

/// Records scanned per read while checking an index.
const SCAN_RECORDS: usize = 2048;

pub(crate) fn recover(files: &Files, now_ns: u64) -> io::Result<Recovered> {
    let index_len = files.index.metadata()?.len();
    if let Some(chunks) = completed_chunks(&files.index, index_len)? {
        // Nothing is ever written after the end record, which was made durable after the
        // data: a complete log needs no checking, so opening old jobs stays O(1).
        return Ok(Recovered {
            chunks,
            complete: true,
            writer: None,
            report: RecoveryReport::default(),
        });
    }
    let data_len = [
        files.data[0].metadata()?.len(),
        files.data[1].metadata()?.len(),
    ];
    let (valid, mut ends) = scan_valid_prefix(&files.index, index_len, data_len)?;
    let mut report = RecoveryReport::default();
    let valid_len = valid * RECORD_LEN as u64;
    if valid_len < index_len {
        files.index.set_len(valid_len)?;
        report.dropped_index_bytes = index_len - valid_len;
    }
    let mut next_seq = valid;
    for stream in STREAMS {
        let s = stream_index(stream);
        while ends[s] < data_len[s] {
            let len = (data_len[s] - ends[s]).min(MAX_LOG_CHUNK as u64) as u32;
            let rec = Record::Chunk {
                stream,
                offset: ends[s],
                len,
                at_ns: now_ns,
            };
            files
                .index
                .write_all_at(&rec.encode(), next_seq * RECORD_LEN as u64)?;
            next_seq += 1;
            ends[s] += u64::from(len);
            report.tail_records += 1;
        }
    }
    if report.repaired() {
        files.index.sync_data()?;
    }
    Ok(Recovered {
        chunks: next_seq,
        complete: false,
        writer: Some(WriterState {
            ends,
            next_seq,
            pending: None,
        }),
        report,
    })
}

/// The number of chunks when the index ends with a valid end record.
fn completed_chunks(index: &File, index_len: u64) -> io::Result<Option<u64>> {
    let rec_len = RECORD_LEN as u64;
    if index_len < rec_len || !index_len.is_multiple_of(rec_len) {
        return Ok(None);
    }
    let mut last = [0u8; RECORD_LEN];
    index.read_exact_at(&mut last, index_len - rec_len)?;
    Ok(match Record::decode(&last) {
        Ok(Record::End { .. }) => Some(index_len / rec_len - 1),
        _ => None,
    })
}

/// True when the index ends with the end record: the output is complete, and since nothing is
/// written after that record, it needs no recovery.
pub(crate) fn is_complete(index: &File) -> io::Result<bool> {
    let len = index.metadata()?.len();
    Ok(completed_chunks(index, len)?.is_some())
}

/// Counts the leading records that are intact, contiguous per stream and backed by data, and
/// returns the bytes they cover per stream.
fn scan_valid_prefix(
    index: &File,
    index_len: u64,
    data_len: [u64; 2],
) -> io::Result<(u64, [u64; 2])> {
    let whole = index_len / RECORD_LEN as u64;
    let mut ends = [0u64; 2];
    let mut buf = vec![0u8; SCAN_RECORDS * RECORD_LEN];
    let mut seq = 0u64;
    while seq < whole {
        let n = (whole - seq).min(SCAN_RECORDS as u64) as usize;
        let part = &mut buf[..n * RECORD_LEN];
        index.read_exact_at(part, seq * RECORD_LEN as u64)?;
        for raw in part.chunks_exact(RECORD_LEN) {
            let mut rec = [0u8; RECORD_LEN];
            rec.copy_from_slice(raw);
            if !extends(&mut ends, &rec, data_len) {
                return Ok((seq, ends));
            }
            seq += 1;
        }
    }
    Ok((seq, ends))
}

/// Accepts `raw` as the next record if it continues its stream and its bytes exist.
fn extends(ends: &mut [u64; 2], raw: &[u8; RECORD_LEN], data_len: [u64; 2]) -> bool {
    // An end record here is not last (the fast path would have taken it), so it is invalid.
    let Ok(Record::Chunk {
        stream,
        offset,
        len,
        ..
    }) = Record::decode(raw)
    else {
        return false;
    };
    let s = stream_index(stream);
    let end = offset.saturating_add(u64::from(len));
    if offset != ends[s] || end > data_len[s] {
        return false;
    }
    ends[s] = end;
    true
}
