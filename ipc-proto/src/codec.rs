//! Frame encoding: one postcard-encoded value per `SOCK_SEQPACKET` message.
//!
//! The message boundary is the socket's, so there is no length prefix to lie about. A frame
//! must decode to exactly one value with no trailing bytes; postcard reads string and byte
//! lengths against the input it has, so a hostile length cannot make it allocate more than
//! the frame's own size.

use serde::{Serialize, de::DeserializeOwned};

use crate::{IpcError, MAX_FDS_PER_FRAME, MAX_FRAME_LEN};

/// A message type of some channel, with the number of file descriptors each variant carries.
///
/// The receiver checks the count it got against [`Message::expected_fds`]; a mismatch is a
/// protocol violation, so fds can never arrive attached to a message that does not own them.
pub trait Message: Serialize + DeserializeOwned {
    /// File descriptors that must accompany this value, in order.
    fn expected_fds(&self) -> usize {
        0
    }
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;
    /// Checks what the types cannot say (a range's bounds, say); the reason names the field.
    /// A value that fails is refused like a malformed frame, on both sides.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Encodes `msg` into `buf` (cleared first), refusing results over [`MAX_FRAME_LEN`].
pub fn encode<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), IpcError> {
    buf.clear();
    let out = postcard::to_extend(msg, std::mem::take(buf))
        .map_err(|e| IpcError::Malformed(format!("cannot encode: {e}")))?;
    *buf = out;
    if buf.len() > MAX_FRAME_LEN {
        return Err(IpcError::Oversized {
            len: buf.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

/// Decodes one frame; the whole frame must be consumed.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, IpcError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(IpcError::Oversized {
            len: frame.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(frame).map_err(|e| IpcError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(IpcError::Malformed(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(value)
}

/// Checks `msg` ([`Message::validate`]) and the `fds` count that goes or came with it
/// ([`check_fds`]): what both transports run on every frame, sent or received.
pub fn check<T: Message>(msg: &T, fds: usize) -> Result<(), IpcError> {
    msg.validate()
        .map_err(|reason| IpcError::Malformed(format!("{}: {reason}", msg.name())))?;
    check_fds(msg, fds)
}

/// Checks the fds that arrived with `msg` against what it declares.
pub fn check_fds<T: Message>(msg: &T, got: usize) -> Result<(), IpcError> {
    let expected = msg.expected_fds();
    if got != expected || expected > MAX_FDS_PER_FRAME {
        return Err(IpcError::UnexpectedFds {
            message: msg.name(),
            expected,
            got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::spawner::{SpawnerReply, SpawnerRequest, ToSpawner};

    #[test]
    fn round_trip() {
        let msg = ToSpawner {
            id: 7,
            request: SpawnerRequest::ListJobs { after: None },
        };
        let mut buf = Vec::new();
        encode(&msg, &mut buf).unwrap();
        let back: ToSpawner = decode(&buf).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.request, SpawnerRequest::ListJobs { .. }));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut buf = Vec::new();
        encode(
            &ToSpawner {
                id: 1,
                request: SpawnerRequest::ListJobs { after: None },
            },
            &mut buf,
        )
        .unwrap();
        buf.push(0);
        let err = decode::<ToSpawner>(&buf).unwrap_err();
        assert!(
            matches!(err, IpcError::Malformed(ref m) if m.contains("trailing")),
            "{err}"
        );
    }

    #[test]
    fn oversized_frames_are_refused_both_ways() {
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(matches!(
            decode::<ToSpawner>(&big),
            Err(IpcError::Oversized { .. })
        ));
        let mut buf = Vec::new();
        let huge = SpawnerReply::Error(crate::RemoteError::internal("x".repeat(MAX_FRAME_LEN)));
        assert!(matches!(
            encode(&huge, &mut buf),
            Err(IpcError::Oversized { .. })
        ));
    }

    #[test]
    fn unknown_variant_is_malformed() {
        // Variant index 200 does not exist in any of our enums.
        let frame = [1u8, 200, 1];
        assert!(matches!(
            decode::<ToSpawner>(&frame),
            Err(IpcError::Malformed(_))
        ));
    }
}
