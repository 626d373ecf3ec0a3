//! The fixed-size record of one metric sample. Records are stored in sequence order and each
//! carries its own sequence number, so after the oldest ones are dropped (see
//! [`super::metric_log`]) a record's position is `seq - first_seq`.
//!
//! Layout (little endian, 96 bytes):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | `seq` |
//! | 8..16 | `at_ns` |
//! | 16..24 | `cpu_usage_ns` |
//! | 24..32 | `cpu_percent` (f64 bits) |
//! | 32..40 | `memory_bytes` |
//! | 40..48 | `memory_limit` |
//! | 48..56 | `io_read_bytes` |
//! | 56..64 | `io_write_bytes` |
//! | 64..72 | `pids` |
//! | 72..80 | `net_rx_bytes` |
//! | 80..88 | `net_tx_bytes` |
//! | 88 | format version (1) |
//! | 89..92 | zero |
//! | 92..96 | FNV-1a of bytes 0..92 |
//!
//! The checksum and the version byte tell a torn or never-written (zero) tail from a record.

use joblet_ipc_proto::channel::logs::MetricSample;

use super::record::fnv1a;

pub const SAMPLE_RECORD_LEN: usize = 96;

const VERSION: u8 = 1;

/// Why 96 bytes are not a valid sample record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleRecordError {
    #[error("checksum mismatch (record torn or overwritten)")]
    Checksum,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
}

pub fn encode(seq: u64, s: &MetricSample) -> [u8; SAMPLE_RECORD_LEN] {
    let fields = [
        seq,
        s.at_ns,
        s.cpu_usage_ns,
        s.cpu_percent.to_bits(),
        s.memory_bytes,
        s.memory_limit,
        s.io_read_bytes,
        s.io_write_bytes,
        s.pids,
        s.net_rx_bytes,
        s.net_tx_bytes,
    ];
    let mut b = [0u8; SAMPLE_RECORD_LEN];
    for (i, f) in fields.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&f.to_le_bytes());
    }
    b[88] = VERSION;
    let sum = fnv1a(&b[..92]);
    b[92..96].copy_from_slice(&sum.to_le_bytes());
    b
}

/// The record's sequence number and sample.
pub fn decode(b: &[u8; SAMPLE_RECORD_LEN]) -> Result<(u64, MetricSample), SampleRecordError> {
    let mut sum = [0u8; 4];
    sum.copy_from_slice(&b[92..96]);
    if fnv1a(&b[..92]) != u32::from_le_bytes(sum) {
        return Err(SampleRecordError::Checksum);
    }
    if b[88] != VERSION {
        return Err(SampleRecordError::Version(b[88]));
    }
    if b[89..92] != [0; 3] {
        return Err(SampleRecordError::Reserved);
    }
    let f = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let sample = MetricSample {
        at_ns: f(1),
        cpu_usage_ns: f(2),
        cpu_percent: f64::from_bits(f(3)),
        memory_bytes: f(4),
        memory_limit: f(5),
        io_read_bytes: f(6),
        io_write_bytes: f(7),
        pids: f(8),
        net_rx_bytes: f(9),
        net_tx_bytes: f(10),
    };
    Ok((f(0), sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> MetricSample {
        MetricSample {
            at_ns: 1_000 + i,
            cpu_usage_ns: 2 * i,
            cpu_percent: i as f64 / 3.0,
            memory_bytes: u64::MAX - i,
            memory_limit: 64 << 20,
            io_read_bytes: 5,
            io_write_bytes: 6,
            pids: 7,
            net_rx_bytes: 0,
            net_tx_bytes: 0,
        }
    }

    #[test]
    fn round_trips_every_field() {
        for i in [0, 1, 77, u64::MAX / 2] {
            let s = sample(i);
            assert_eq!(decode(&encode(i, &s)), Ok((i, s)));
        }
    }

    #[test]
    fn refuses_torn_zero_and_flipped_records() {
        let good = encode(9, &sample(9));
        for i in 0..SAMPLE_RECORD_LEN {
            let mut b = good;
            b[i] ^= 0x10;
            assert!(decode(&b).is_err(), "flip at {i} accepted");
        }
        let mut torn = [0u8; SAMPLE_RECORD_LEN];
        torn[..40].copy_from_slice(&good[..40]);
        assert_eq!(decode(&torn), Err(SampleRecordError::Checksum));
        assert!(decode(&[0u8; SAMPLE_RECORD_LEN]).is_err());
    }
}
