//! The fixed-size index record. A record's position in the index file is its sequence number,
//! so finding chunk N is one `pread` at `N * RECORD_LEN`.
//!
//! Layout (little endian, 32 bytes):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind: 1 stdout, 2 stderr, 3 end of output |
//! | 1..4 | zero |
//! | 4..8 | `len` (u32): bytes of the chunk |
//! | 8..16 | `offset` (u64): where the chunk starts in its stream's data file |
//! | 16..24 | `at_ns` (u64): when it was stored |
//! | 24..28 | zero |
//! | 28..32 | FNV-1a of bytes 0..28 |
//!
//! The checksum tells a record that was only partly written (a torn tail after a crash) from a
//! real one; the zero bytes leave room for a later format without guessing.

use joblet_ipc_proto::MAX_LOG_CHUNK;
use joblet_ipc_proto::job::Stream;

pub const RECORD_LEN: usize = 32;

const KIND_STDOUT: u8 = 1;
const KIND_STDERR: u8 = 2;
const KIND_END: u8 = 3;

/// What an index record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// `len` bytes of `stream`, starting at `offset` in that stream's data file.
    Chunk {
        stream: Stream,
        offset: u64,
        len: u32,
        at_ns: u64,
    },
    /// Both streams reached end of file and everything before is on disk.
    End { at_ns: u64 },
}

/// Why 32 bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("checksum mismatch (record torn or overwritten)")]
    Checksum,
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("chunk length {0} is outside 1..={MAX_LOG_CHUNK}")]
    Length(u32),
    #[error("end record carries a length or offset")]
    EndPayload,
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let (kind, offset, len, at_ns) = match *self {
            Record::Chunk {
                stream,
                offset,
                len,
                at_ns,
            } => (stream_kind(stream), offset, len, at_ns),
            Record::End { at_ns } => (KIND_END, 0, 0, at_ns),
        };
        let mut b = [0u8; RECORD_LEN];
        b[0] = kind;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        b[8..16].copy_from_slice(&offset.to_le_bytes());
        b[16..24].copy_from_slice(&at_ns.to_le_bytes());
        let sum = fnv1a(&b[..28]);
        b[28..32].copy_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<Record, RecordError> {
        if fnv1a(&b[..28]) != u32_at(b, 28) {
            return Err(RecordError::Checksum);
        }
        if b[1..4] != [0; 3] || b[24..28] != [0; 4] {
            return Err(RecordError::Reserved);
        }
        let len = u32_at(b, 4);
        let offset = u64_at(b, 8);
        let at_ns = u64_at(b, 16);
        let stream = match b[0] {
            KIND_STDOUT => Stream::Stdout,
            KIND_STDERR => Stream::Stderr,
            KIND_END if len == 0 && offset == 0 => return Ok(Record::End { at_ns }),
            KIND_END => return Err(RecordError::EndPayload),
            other => return Err(RecordError::Kind(other)),
        };
        if len == 0 || len as usize > MAX_LOG_CHUNK {
            return Err(RecordError::Length(len));
        }
        Ok(Record::Chunk {
            stream,
            offset,
            len,
            at_ns,
        })
    }
}

fn stream_kind(s: Stream) -> u8 {
    match s {
        Stream::Stdout => KIND_STDOUT,
        Stream::Stderr => KIND_STDERR,
    }
}

fn u32_at(b: &[u8; RECORD_LEN], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8; RECORD_LEN], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// 32-bit FNV-1a: enough to detect a torn write, which is all it is for.
pub(super) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for r in [
            Record::Chunk {
                stream: Stream::Stdout,
                offset: 0,
                len: 1,
                at_ns: 7,
            },
            Record::Chunk {
                stream: Stream::Stderr,
                offset: u64::MAX - 5,
                len: MAX_LOG_CHUNK as u32,
                at_ns: u64::MAX,
            },
            Record::End { at_ns: 42 },
        ] {
            assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn refuses_torn_and_invalid_records() {
        let good = Record::Chunk {
            stream: Stream::Stdout,
            offset: 10,
            len: 5,
            at_ns: 1,
        }
        .encode();
        // Any single flipped byte is caught.
        for i in 0..RECORD_LEN {
            let mut b = good;
            b[i] ^= 0x40;
            assert!(Record::decode(&b).is_err(), "flip at {i} accepted");
        }
        // A record cut short after 12 bytes (the rest still zero) is torn.
        let mut torn = [0u8; RECORD_LEN];
        torn[..12].copy_from_slice(&good[..12]);
        assert_eq!(Record::decode(&torn), Err(RecordError::Checksum));
        // Zero bytes never pass for a record.
        assert!(Record::decode(&[0u8; RECORD_LEN]).is_err());
    }

    #[test]
    fn refuses_lengths_outside_one_frame() {
        let mut b = [0u8; RECORD_LEN];
        b[0] = KIND_STDOUT;
        b[4..8].copy_from_slice(&(MAX_LOG_CHUNK as u32 + 1).to_le_bytes());
        let sum = fnv1a(&b[..28]);
        b[28..32].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            Record::decode(&b),
            Err(RecordError::Length(MAX_LOG_CHUNK as u32 + 1))
        );
    }
}
