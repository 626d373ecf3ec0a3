//! Transport on plain sockets for the spawner, which runs a single-threaded `poll(2)` loop
//! and links no async runtime (so it can fork safely and stays small to audit).
//!
//! Sockets are used non-blocking by the spawner: a `WouldBlock` surfaces as
//! [`IpcError::Io`] with [`std::io::ErrorKind::WouldBlock`], see [`IpcError::would_block`].
//! The hello exchange is split into steps ([`SeqSocket::answer_hello`]) so the loop never waits
//! on one client.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr, sockopt,
};

use crate::codec::{self, Message};
use crate::handshake::{self, Hello, HelloReply};
use crate::{Channel, IpcError, MAX_FRAME_LEN};

/// Room for the kernel's per-message maximum of 253 fds (`SCM_MAX_FD`): control data is
/// never truncated, so every fd that arrives is seen, owned and closed by us.
const CMSG_BUF_LEN: usize = 1088;

impl IpcError {
    /// True when a non-blocking operation had nothing to do.
    pub fn would_block(&self) -> bool {
        matches!(self, IpcError::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

fn io(e: nix::Error) -> IpcError {
    IpcError::Io(std::io::Error::from(e))
}

/// A connected `SOCK_SEQPACKET` socket.
pub struct SeqSocket {
    fd: OwnedFd,
}

impl SeqSocket {
    pub fn from_fd(fd: OwnedFd) -> SeqSocket {
        SeqSocket { fd }
    }

    /// Connects (blocking) and completes the client side of the handshake.
    pub fn connect(path: &Path, channel: Channel) -> Result<SeqSocket, IpcError> {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io)?;
        let addr = UnixAddr::new(path).map_err(io)?;
        socket::connect(fd.as_raw_fd(), &addr).map_err(io)?;
        let s = SeqSocket { fd };
        s.send(&Hello::new(channel), &[])?;
        let mut buf = Vec::new();
        let (reply, _) = s.recv::<HelloReply>(&mut buf)?;
        handshake::accepted(reply)?;
        Ok(s)
    }

    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        let flags = nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
        flags.set(nix::fcntl::OFlag::O_NONBLOCK, on);
        nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(())
    }

    pub fn peer_uid(&self) -> std::io::Result<u32> {
        Ok(socket::getsockopt(&self.fd, sockopt::PeerCredentials)?.uid())
    }

    /// Server side of the handshake, given the client's hello: checks peer uid and hello,
    /// answers, and returns an error (after telling the client why) when refused.
    pub fn answer_hello(
        &self,
        hello: &Hello,
        served: Channel,
        allowed_uids: &[u32],
    ) -> Result<(), IpcError> {
        let uid = self.peer_uid()?;
        let verdict = handshake::check_peer(uid, allowed_uids, served)
            .map_err(|e| e.to_string())
            .and_then(|()| hello.check(served));
        match verdict {
            Ok(()) => self.send(&HelloReply::Accepted, &[]),
            Err(reason) => {
                let _ = self.send(
                    &HelloReply::Refused {
                        reason: reason.clone(),
                    },
                    &[],
                );
                Err(IpcError::Handshake(reason))
            }
        }
    }

    /// Sends one frame with `fds` attached; `fds` must match what `msg` declares.
    pub fn send<M: Message>(&self, msg: &M, fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
        codec::check(msg, fds.len())?;
        let mut buf = Vec::new();
        codec::encode(msg, &mut buf)?;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
        let sent = socket::sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&buf)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io)?;
        if sent != buf.len() {
            return Err(IpcError::Truncated);
        }
        Ok(())
    }

    /// Receives one frame into `buf` (grown to the frame limit once). Any fds received are
    /// closed when the frame is refused.
    pub fn recv<M: Message>(&self, buf: &mut Vec<u8>) -> Result<(M, Vec<OwnedFd>), IpcError> {
        if buf.len() < MAX_FRAME_LEN {
            buf.resize(MAX_FRAME_LEN, 0);
        }
        let mut cmsg = [0u8; CMSG_BUF_LEN];
        let mut iov = [IoSliceMut::new(buf)];
        let msg = socket::recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io)?;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for fd in raw {
                        // SAFETY: the kernel just installed `fd` in our table for this
                        // message; nothing else refers to it, so we are its only owner.
                        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(IpcError::FdsTruncated);
        }
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(IpcError::Truncated);
        }
        let len = msg.bytes;
        if len == 0 {
            return Err(IpcError::Closed);
        }
        let decoded: M = codec::decode(&buf[..len])?;
        codec::check(&decoded, fds.len())?;
        Ok((decoded, fds))
    }
}

impl AsFd for SeqSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SeqSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A listening `SOCK_SEQPACKET` socket.
pub struct SeqListener {
    fd: OwnedFd,
}

impl SeqListener {
    /// Wraps an inherited listening socket.
    pub fn from_fd(fd: OwnedFd) -> SeqListener {
        SeqListener { fd }
    }

    /// Binds and listens at `path` (tests and standalone runs).
    pub fn bind(path: &Path) -> std::io::Result<SeqListener> {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        socket::listen(&fd, Backlog::new(64)?)?;
        Ok(SeqListener { fd })
    }

    /// Accepts one connection, non-blocking and close-on-exec. `Ok(None)` when none waits
    /// (the listener itself must be non-blocking for that; see [`Self::set_nonblocking`]).
    pub fn accept(&self) -> std::io::Result<Option<SeqSocket>> {
        match socket::accept4(
            self.fd.as_raw_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            Ok(fd) => {
                // SAFETY: accept4 returned a new fd that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                Ok(Some(SeqSocket { fd }))
            }
            Err(nix::Error::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        SeqSocket {
            fd: self.fd.try_clone()?,
        }
        .set_nonblocking(on)
    }
}

impl AsFd for SeqListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SeqListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::spawner::{SpawnerRequest, ToSpawner};

    #[test]
    fn handshake_and_messages() {
        let dir = std::env::temp_dir().join(format!("ipc-blocking-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = SeqListener::bind(&path).unwrap();
        let me = nix::unistd::getuid().as_raw();
        let p2 = path.clone();
        let client = std::thread::spawn(move || {
            let c = SeqSocket::connect(&p2, Channel::Spawner).unwrap();
            c.send(
                &ToSpawner {
                    id: 1,
                    request: SpawnerRequest::ListJobs { after: None },
                },
                &[],
            )
            .unwrap();
            // A refused connection gets the reason.
            SeqSocket::connect(&p2, Channel::State).err().unwrap()
        });
        let mut buf = Vec::new();
        let accept = |l: &SeqListener| loop {
            if let Some(s) = l.accept().unwrap() {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        l.set_nonblocking(true).unwrap();
        let s = accept(&l);
        let (hello, _) = s.recv::<Hello>(&mut buf).unwrap();
        s.answer_hello(&hello, Channel::Spawner, &[me]).unwrap();
        let (req, fds) = s.recv::<ToSpawner>(&mut buf).unwrap();
        assert_eq!(req.id, 1);
        assert!(fds.is_empty());
        let s2 = accept(&l);
        let (hello, _) = s2.recv::<Hello>(&mut buf).unwrap();
        assert!(s2.answer_hello(&hello, Channel::Spawner, &[me]).is_err());
        let err = client.join().unwrap();
        assert!(err.to_string().contains("serves channel spawner"), "{err}");
    }
}
