//! The two small byte protocols inside a launch:
//! - shim → spawner, on the shim's status pipe: [`ShimReport`] frames (`u16` length, then
//!   postcard). Each frame stays under `PIPE_BUF`, so it is written atomically and a reader
//!   never sees half of one.
//! - job init → shim, on the close-on-exec error pipe: nothing at all when the command was
//!   exec'd (the pipe just closes), else an `i32` exit code and the error text.

use serde::{Deserialize, Serialize};

use crate::record::{ExitFile, StartedFile};

/// Largest report frame; below `PIPE_BUF` (4096) so pipe writes are atomic.
pub const MAX_REPORT: usize = 4000;
/// Largest error text from the job init.
pub const MAX_INIT_ERROR: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimReport {
    /// The command was exec'd (also written to the `started` record).
    Started(StartedFile),
    /// The job is over (also written to the `exit` record).
    Ended(ExitFile),
}

/// Encodes one report frame.
pub fn encode(r: &ShimReport) -> Vec<u8> {
    let body = postcard::to_allocvec(r).unwrap_or_default();
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    let mut out = len.to_le_bytes().to_vec();
    out.extend(body);
    out
}

/// Accumulates bytes from a status pipe and yields whole reports.
#[derive(Debug, Default)]
pub struct ReportReader {
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed shim report: {0}")]
pub struct ReportError(String);

impl ReportReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete report, if one has arrived.
    pub fn next_report(&mut self) -> Result<Option<ShimReport>, ReportError> {
        let Some(head) = self.buf.get(..2) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_le_bytes([head[0], head[1]]));
        if len == 0 || len > MAX_REPORT {
            return Err(ReportError(format!("frame length {len}")));
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = self.buf.drain(..2 + len).skip(2).collect();
        postcard::from_bytes(&frame)
            .map(Some)
            .map_err(|e| ReportError(e.to_string()))
    }
}

/// The error-pipe message of a failed launch.
pub fn encode_init_error(exit_code: i32, message: &str) -> Vec<u8> {
    let mut out = exit_code.to_le_bytes().to_vec();
    let mut cut = message.len().min(MAX_INIT_ERROR);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    out.extend_from_slice(&message.as_bytes()[..cut]);
    out
}

/// Reads what the error pipe carried: `None` when it was empty (the command was exec'd).
pub fn decode_init_error(bytes: &[u8]) -> Option<(i32, String)> {
    if bytes.is_empty() {
        return None;
    }
    match bytes.split_first_chunk::<4>() {
        Some((code, text)) => Some((
            i32::from_le_bytes(*code),
            String::from_utf8_lossy(text).into_owned(),
        )),
        None => Some((-1, "job init sent a truncated error".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_split_across_reads() {
        let a = ShimReport::Started(StartedFile {
            job_pid: 42,
            started_ns: 7,
        });
        let b = ShimReport::Ended(ExitFile::Exited {
            wait_status: 0,
            ended_ns: 8,
        });
        let mut bytes = encode(&a);
        bytes.extend(encode(&b));
        let mut r = ReportReader::default();
        for chunk in bytes.chunks(3) {
            r.push(chunk);
        }
        assert_eq!(r.next_report().unwrap(), Some(a));
        assert_eq!(r.next_report().unwrap(), Some(b));
        assert_eq!(r.next_report().unwrap(), None);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut r = ReportReader::default();
        r.push(&[0, 0]);
        assert!(r.next_report().is_err());
        let mut r = ReportReader::default();
        r.push(&[2, 0, 250, 250]);
        assert!(r.next_report().is_err());
    }

    #[test]
    fn biggest_report_fits_a_pipe_write() {
        let r = ShimReport::Ended(ExitFile::LaunchFailed {
            exit_code: -1,
            message: "x".repeat(crate::record::MAX_MESSAGE_LEN),
            ended_ns: u64::MAX,
        });
        assert!(encode(&r).len() <= MAX_REPORT);
    }

    #[test]
    fn init_errors() {
        assert_eq!(decode_init_error(&[]), None);
        let e = encode_init_error(127, "command not found: x");
        assert_eq!(
            decode_init_error(&e),
            Some((127, "command not found: x".into()))
        );
        assert_eq!(decode_init_error(&[1]).unwrap().0, -1);
        assert!(encode_init_error(1, &"é".repeat(5000)).len() <= 4 + MAX_INIT_ERROR);
    }
}
