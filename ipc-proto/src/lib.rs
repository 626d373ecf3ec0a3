//! The internal contract between Joblet's processes.
//!
//! Every process boundary in Joblet is a Unix `SOCK_SEQPACKET` socket carrying
//! [postcard](https://docs.rs/postcard) frames. One socket serves one [`Channel`], and each
//! channel has one closed request enum and one closed reply enum (see [`channel`]). A
//! connection starts with a [`handshake`] naming the channel and the protocol version; the
//! server checks the peer's uid with `SO_PEERCRED` before it reads anything.
//!
//! Nothing here trusts the other side: [`codec::decode`] refuses oversized frames, trailing
//! bytes and unknown variants; the transports refuse truncated frames, truncated or
//! unexpected file descriptors. Any violation is an [`IpcError`] that closes the connection.
//!
//! The shared job model ([`job`]) and its validation ([`validate`]) live here too, so the
//! frontend validates a request once for the client's sake and the spawner validates the same
//! spec again, with the same code, as if the frontend were hostile.

pub mod channel;
pub mod codec;
pub mod error;
pub mod handshake;
pub mod inherit;
pub mod job;
pub mod settings;
pub mod validate;

#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use channel::Channel;
pub use error::{IpcError, RemoteError, RemoteErrorKind};

/// Bumped on any incompatible change to a message; both sides must agree exactly.
pub const PROTOCOL_VERSION: u16 = 4;

/// The largest frame either side sends or accepts, in bytes.
///
/// A `SOCK_SEQPACKET` message must fit in the sender's socket buffer (`net.core.wmem_default`,
/// 208 KiB by default, and unprivileged processes cannot raise it), so frames stay well below.
pub const MAX_FRAME_LEN: usize = 128 * 1024;

/// The most file descriptors one frame may carry.
pub const MAX_FDS_PER_FRAME: usize = 8;

/// The largest chunk of output persistd stores under one sequence number (one `splice`).
pub const MAX_LOG_CHUNK: usize = 64 * 1024;

/// The most bytes one [`channel::logs::LogRange`] covers: what a reader reads (and allocates)
/// at once.
pub const MAX_LOG_RANGE: usize = 1 << 20;
