//! Turning index records into the [`LogRange`]s a reader is sent: consecutive chunks of one
//! stream whose bytes follow each other in its data file become one range, up to
//! [`MAX_LOG_RANGE`] bytes. The reader then reads a whole range with one `pread` and sends
//! it on as one message, instead of one frame and one wake-up per 64 KiB chunk.

use joblet_ipc_proto::MAX_LOG_RANGE;
use joblet_ipc_proto::channel::logs::LogRange;
use joblet_ipc_proto::job::Stream;

/// One stored chunk, as its index record describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAt {
    pub seq: u64,
    pub stream: Stream,
    pub offset: u64,
    pub len: u32,
    pub at_ns: u64,
}

/// Collects chunks, in sequence order, into ranges.
#[derive(Debug, Default)]
pub struct RangeBuilder {
    done: Vec<LogRange>,
    open: Option<LogRange>,
}

impl RangeBuilder {
    /// Adds the chunk after the last one pushed (`seq` one higher).
    pub fn push(&mut self, c: ChunkAt) {
        if let Some(open) = &mut self.open
            && extends(open, &c)
        {
            open.last_seq = c.seq;
            open.len += c.len;
            open.at_ns = c.at_ns;
            return;
        }
        let started = LogRange {
            first_seq: c.seq,
            last_seq: c.seq,
            stream: c.stream,
            at_ns: c.at_ns,
            offset: c.offset,
            len: c.len,
        };
        if let Some(closed) = self.open.replace(started) {
            self.done.push(closed);
        }
    }

    /// The ranges, in sequence order.
    pub fn finish(mut self) -> Vec<LogRange> {
        self.done.extend(self.open.take());
        self.done
    }
}

/// Whether `c` continues `open`: the next chunk, the same stream, its bytes right after the
/// range's, and the whole still within one range's size.
fn extends(open: &LogRange, c: &ChunkAt) -> bool {
    c.seq == open.last_seq.wrapping_add(1)
        && c.stream == open.stream
        && open.offset.checked_add(u64::from(open.len)) == Some(c.offset)
        && open.len as usize + c.len as usize <= MAX_LOG_RANGE
}

#[cfg(test)]
mod tests {
    use super::*;

    const K64: u32 = 64 * 1024;

    fn chunk(seq: u64, stream: Stream, offset: u64, len: u32) -> ChunkAt {
        ChunkAt {
            seq,
            stream,
            offset,
            len,
            at_ns: 100 + seq,
        }
    }

    fn ranges(chunks: &[ChunkAt]) -> Vec<(u64, u64, Stream, u64, u32, u64)> {
        let mut b = RangeBuilder::default();
        for c in chunks {
            b.push(*c);
        }
        b.finish()
            .iter()
            .map(|r| (r.first_seq, r.last_seq, r.stream, r.offset, r.len, r.at_ns))
            .collect()
    }

    #[test]
    fn contiguous_chunks_of_one_stream_merge() {
        let out = Stream::Stdout;
        let got = ranges(&[
            chunk(7, out, 0, 10),
            chunk(8, out, 10, 5),
            chunk(9, out, 15, 1),
        ]);
        // One range; its time is its last chunk's.
        assert_eq!(got, [(7, 9, out, 0, 16, 109)]);
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn a_stream_switch_or_a_gap_starts_a_new_range() {
        let (out, err) = (Stream::Stdout, Stream::Stderr);
        let got = ranges(&[
            chunk(0, out, 0, 4),
            chunk(1, err, 0, 3),
            chunk(2, out, 4, 2),
            // A gap in the file (recovery re-indexed a tail, say).
            chunk(3, out, 10, 2),
            chunk(4, out, 12, 2),
        ]);
        assert_eq!(
            got,
            [
                (0, 0, out, 0, 4, 100),
                (1, 1, err, 0, 3, 101),
                (2, 2, out, 4, 2, 102),
                (3, 4, out, 10, 4, 104),
            ]
        );
        // Bytes that follow in the file but a sequence number that does not.
        let got = ranges(&[chunk(0, out, 0, 4), chunk(2, out, 4, 4)]);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn ranges_are_cut_at_the_size_cap_on_chunk_boundaries() {
        let out = Stream::Stdout;
        // 40 full chunks: 16 fit in 1 MiB exactly, then 16, then 8.
        let chunks: Vec<ChunkAt> = (0..40)
            .map(|i| chunk(i, out, i * u64::from(K64), K64))
            .collect();
        let got = ranges(&chunks);
        assert_eq!(
            got.iter().map(|r| (r.0, r.1, r.4)).collect::<Vec<_>>(),
            [(0, 15, 1 << 20), (16, 31, 1 << 20), (32, 39, 8 * K64)]
        );
        // A chunk that would cross the cap starts the next range, whole.
        let got = ranges(&[chunk(0, out, 0, 100), chunk(1, out, 100, (1 << 20) - 99)]);
        assert_eq!(got.len(), 2);
        let got = ranges(&[chunk(0, out, 0, 100), chunk(1, out, 100, (1 << 20) - 100)]);
        assert_eq!(got, [(0, 1, out, 0, 1 << 20, 101)]);
    }

    #[test]
    fn every_range_passes_the_protocol_checks() {
        let chunks: Vec<ChunkAt> = (0..100)
            .map(|i| {
                let stream = if i % 7 == 3 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                chunk(i, stream, i * u64::from(K64), K64)
            })
            .collect();
        let mut b = RangeBuilder::default();
        chunks.iter().for_each(|c| b.push(*c));
        let got = b.finish();
        let mut next = 0;
        for r in &got {
            assert_eq!(r.validate(), Ok(()));
            assert_eq!(r.first_seq, next, "ranges cover every chunk once, in order");
            next = r.next_seq();
        }
        assert_eq!(next, 100);
    }
}
