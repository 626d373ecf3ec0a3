//! The first frame of every connection: the client names the channel and the protocol
//! version; the server accepts or refuses with a reason, then closes on refusal.
//!
//! The server checks the peer's uid (`SO_PEERCRED`) before reading this frame, and refuses
//! with a `Refused` reply so the client's error says why.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::{Channel, IpcError, PROTOCOL_VERSION};

pub const MAGIC: [u8; 4] = *b"JBLT";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Accepted,
    Refused { reason: String },
}

impl Message for Hello {
    fn name(&self) -> &'static str {
        "Hello"
    }
}

impl Message for HelloReply {
    fn name(&self) -> &'static str {
        "HelloReply"
    }
}

impl Hello {
    pub fn new(channel: Channel) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            channel,
        }
    }

    /// The server's check of a client's hello against the channel it serves.
    pub fn check(&self, served: Channel) -> Result<(), String> {
        if self.magic != MAGIC {
            return Err("not a Joblet IPC client (bad magic)".into());
        }
        if self.version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not supported (this side speaks {PROTOCOL_VERSION}); \
                 all Joblet binaries must come from the same build",
                self.version
            ));
        }
        if self.channel != served {
            return Err(format!(
                "this socket serves channel {served}, not {}",
                self.channel
            ));
        }
        Ok(())
    }
}

/// Checks a peer uid against a channel's allowed uids.
pub fn check_peer(uid: u32, allowed: &[u32], channel: Channel) -> Result<(), IpcError> {
    if allowed.contains(&uid) {
        Ok(())
    } else {
        Err(IpcError::PeerRefused {
            uid,
            channel: channel.as_str(),
        })
    }
}

/// The client's reading of the server's reply.
pub fn accepted(reply: HelloReply) -> Result<(), IpcError> {
    match reply {
        HelloReply::Accepted => Ok(()),
        HelloReply::Refused { reason } => Err(IpcError::Handshake(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_every_field() {
        assert!(Hello::new(Channel::State).check(Channel::State).is_ok());
        assert!(Hello::new(Channel::State).check(Channel::Spawner).is_err());
        let mut h = Hello::new(Channel::Logs);
        h.version += 1;
        assert!(h.check(Channel::Logs).unwrap_err().contains("version"));
        h = Hello::new(Channel::Logs);
        h.magic = *b"HTTP";
        assert!(h.check(Channel::Logs).unwrap_err().contains("magic"));
    }

    #[test]
    fn peer_check() {
        assert!(check_peer(0, &[0], Channel::Output).is_ok());
        assert!(matches!(
            check_peer(1000, &[0], Channel::Output),
            Err(IpcError::PeerRefused { uid: 1000, .. })
        ));
    }
}
