//! Async transport for the unprivileged daemons, on tokio-seqpacket.
//!
//! A server wraps its listening socket (usually inherited from the supervisor) in a
//! [`Listener`]; each [`Incoming`] connection is checked (peer uid, then hello) in
//! [`Incoming::handshake`], which the server runs in the connection's own task so a stalled
//! client cannot hold up the accept loop. A client calls [`connect`].

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_seqpacket::ancillary::{AncillaryMessageWriter, OwnedAncillaryMessage};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::codec::{self, Message};
use crate::handshake::{self, Hello, HelloReply};
use crate::{Channel, IpcError, MAX_FRAME_LEN};

/// How long a new connection may take to send its hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Room for the kernel's per-message maximum of 253 fds (`SCM_MAX_FD`), so control data is
/// never truncated and every fd that arrives is owned (and closed) by us.
const CMSG_BUF_LEN: usize = 1088;

pub struct Listener {
    inner: UnixSeqpacketListener,
    channel: Channel,
    allowed_uids: Vec<u32>,
}

impl Listener {
    /// Wraps an inherited listening socket, making it non-blocking first (an inherited
    /// blocking listener would stall the whole runtime on its second accept). Must run
    /// inside a tokio runtime.
    pub fn from_fd(
        fd: OwnedFd,
        channel: Channel,
        allowed_uids: Vec<u32>,
    ) -> std::io::Result<Listener> {
        set_nonblocking(&fd)?;
        Ok(Listener {
            inner: UnixSeqpacketListener::try_from(fd)?,
            channel,
            allowed_uids,
        })
    }

    /// Binds a new socket at `path` (tests and standalone runs).
    pub fn bind(
        path: impl AsRef<Path>,
        channel: Channel,
        allowed_uids: Vec<u32>,
    ) -> std::io::Result<Listener> {
        Ok(Listener {
            inner: UnixSeqpacketListener::bind(path)?,
            channel,
            allowed_uids,
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    pub async fn accept(&mut self) -> std::io::Result<Incoming> {
        let sock = self.inner.accept().await?;
        Ok(Incoming {
            sock,
            channel: self.channel,
            allowed_uids: self.allowed_uids.clone(),
        })
    }
}

/// An accepted connection that has not been checked yet.
pub struct Incoming {
    sock: UnixSeqpacket,
    channel: Channel,
    allowed_uids: Vec<u32>,
}

impl Incoming {
    /// Reads the client's hello, checks the peer's uid and the hello, answers, and yields the
    /// usable connection. The hello is read first even from a peer that will be refused:
    /// closing with it unread would reset the connection before the client sees the reason.
    pub async fn handshake(self) -> Result<Conn, IpcError> {
        let uid = self.sock.peer_cred()?.uid();
        let mut conn = Conn::new(self.sock, uid);
        let hello: Hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.recv()).await {
            Ok(r) => r?.msg,
            Err(_) => return Err(IpcError::Handshake("no hello within 5 s".into())),
        };
        if let Err(e) = handshake::check_peer(uid, &self.allowed_uids, self.channel) {
            let _ = conn.send(&refused(&e.to_string()), &[]).await;
            return Err(e);
        }
        if let Err(reason) = hello.check(self.channel) {
            let _ = conn.send(&refused(&reason), &[]).await;
            return Err(IpcError::Handshake(reason));
        }
        conn.send(&HelloReply::Accepted, &[]).await?;
        Ok(conn)
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn refused(reason: &str) -> HelloReply {
    HelloReply::Refused {
        reason: reason.to_owned(),
    }
}

/// Connects to a server and completes the handshake.
pub async fn connect(path: impl AsRef<Path>, channel: Channel) -> Result<Conn, IpcError> {
    let sock = UnixSeqpacket::connect(path).await?;
    let uid = sock.peer_cred()?.uid();
    let mut conn = Conn::new(sock, uid);
    conn.send(&Hello::new(channel), &[]).await?;
    let reply: HelloReply = match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.recv()).await {
        Ok(r) => r?.msg,
        Err(_) => {
            return Err(IpcError::Handshake(
                "server did not answer within 5 s".into(),
            ));
        }
    };
    handshake::accepted(reply)?;
    Ok(conn)
}

/// A checked connection. Split it to send from several tasks while one task receives.
pub struct Conn {
    sender: Sender,
    receiver: Receiver,
}

/// A received message and the fds that came with it (already checked against the message).
pub struct Received<M> {
    pub msg: M,
    pub fds: Vec<OwnedFd>,
}

impl Conn {
    fn new(sock: UnixSeqpacket, peer_uid: u32) -> Conn {
        let sock = Arc::new(sock);
        Conn {
            sender: Sender {
                sock: sock.clone(),
                spare: Arc::default(),
            },
            receiver: Receiver {
                sock,
                buf: Vec::new(),
                peer_uid,
            },
        }
    }

    pub fn peer_uid(&self) -> u32 {
        self.receiver.peer_uid
    }

    pub async fn send<M: Message>(&self, msg: &M, fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
        self.sender.send(msg, fds).await
    }

    pub async fn recv<M: Message>(&mut self) -> Result<Received<M>, IpcError> {
        self.receiver.recv().await
    }

    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }
}

#[derive(Clone)]
pub struct Sender {
    sock: Arc<UnixSeqpacket>,
    /// The encoding buffer of the last frame, kept for the next one: a fresh buffer per frame
    /// grows by doubling (copying a 64 KiB log chunk several times) and its pages are handed
    /// back to the kernel and faulted in again. Taken out for the duration of a send (never
    /// locked across an await); concurrent senders simply allocate their own.
    spare: Arc<Mutex<Vec<u8>>>,
}

impl Sender {
    /// Sends one frame, with `fds` attached; `fds` must match what `msg` declares.
    pub async fn send<M: Message>(&self, msg: &M, fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
        codec::check(msg, fds.len())?;
        let mut buf = self.take_spare();
        let result = self.send_with(msg, fds, &mut buf).await;
        self.keep_spare(buf);
        result
    }

    fn take_spare(&self) -> Vec<u8> {
        match self.spare.try_lock() {
            Ok(mut spare) => std::mem::take(&mut *spare),
            Err(_) => Vec::new(),
        }
    }

    fn keep_spare(&self, buf: Vec<u8>) {
        if let Ok(mut spare) = self.spare.try_lock()
            && spare.capacity() < buf.capacity()
        {
            *spare = buf;
        }
    }

    async fn send_with<M: Message>(
        &self,
        msg: &M,
        fds: &[BorrowedFd<'_>],
        buf: &mut Vec<u8>,
    ) -> Result<(), IpcError> {
        codec::encode(msg, buf)?;
        let buf = &buf[..];
        let sent = if fds.is_empty() {
            self.sock.send(buf).await?
        } else {
            let mut cmsg = [0u8; CMSG_BUF_LEN];
            let mut anc = AncillaryMessageWriter::new(&mut cmsg);
            anc.add_fds(fds.iter().copied())
                .map_err(|_| IpcError::Malformed("too many fds to send".into()))?;
            self.sock.send_with_ancillary(buf, &mut anc).await?
        };
        if sent != buf.len() {
            return Err(IpcError::Truncated);
        }
        Ok(())
    }

    /// Shuts the connection down in both directions.
    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    pub fn raw_fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }
}

pub struct Receiver {
    sock: Arc<UnixSeqpacket>,
    buf: Vec<u8>,
    peer_uid: u32,
}

impl Receiver {
    pub fn peer_uid(&self) -> u32 {
        self.peer_uid
    }

    /// Receives one frame. Oversized or truncated frames, malformed content and fds that do
    /// not belong to the message are errors; any fds received are closed on error.
    pub async fn recv<M: Message>(&mut self) -> Result<Received<M>, IpcError> {
        if self.buf.len() < MAX_FRAME_LEN {
            self.buf.resize(MAX_FRAME_LEN, 0);
        }
        let mut cmsg = [0u8; CMSG_BUF_LEN];
        let (info, anc) = self
            .sock
            .recv_with_ancillary(&mut self.buf, &mut cmsg)
            .await?;
        let anc_truncated = info.ancillary_truncated();
        let mut fds: Vec<OwnedFd> = Vec::new();
        for m in anc.into_messages() {
            if let OwnedAncillaryMessage::FileDescriptors(f) = m {
                fds.extend(f);
            }
        }
        if anc_truncated {
            return Err(IpcError::FdsTruncated);
        }
        if info.truncated() {
            return Err(IpcError::Truncated);
        }
        let len = info.bytes_read();
        if len == 0 {
            return Err(IpcError::Closed);
        }
        let msg: M = codec::decode(&self.buf[..len])?;
        codec::check(&msg, fds.len())?;
        Ok(Received { msg, fds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::output::ToPersistOutput;
    use crate::channel::state::ToState;
    use crate::job::JobId;
    use std::os::fd::AsFd;

    fn tmp_sock(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ipc-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    fn me() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    #[tokio::test]
    async fn request_reply_and_fds() {
        let path = tmp_sock("rr");
        let mut l = Listener::bind(&path, Channel::Output, vec![me()]).unwrap();
        let server = tokio::spawn(async move {
            let mut c = l.accept().await.unwrap().handshake().await.unwrap();
            let r: Received<ToPersistOutput> = c.recv().await.unwrap();
            assert_eq!(r.fds.len(), 2);
        });
        let c = connect(&path, Channel::Output).await.unwrap();
        let (a, b) = std::io::pipe().unwrap();
        let job = JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap();
        let msg = ToPersistOutput::Attach { job, started_ns: 1 };
        // The declared count is enforced on the sending side too.
        assert!(c.send(&msg, &[a.as_fd()]).await.is_err());
        c.send(&msg, &[a.as_fd(), b.as_fd()]).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn wrong_channel_is_refused_with_a_reason() {
        let path = tmp_sock("chan");
        let mut l = Listener::bind(&path, Channel::State, vec![me()]).unwrap();
        let server = tokio::spawn(async move { l.accept().await.unwrap().handshake().await });
        let err = connect(&path, Channel::Spawner).await.err().unwrap();
        assert!(err.to_string().contains("serves channel state"), "{err}");
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn wrong_peer_uid_is_refused() {
        let path = tmp_sock("uid");
        let mut l = Listener::bind(&path, Channel::State, vec![me() + 1]).unwrap();
        let server = tokio::spawn(async move { l.accept().await.unwrap().handshake().await });
        let err = connect(&path, Channel::State).await.err().unwrap();
        assert!(err.to_string().contains("not allowed"), "{err}");
        assert!(matches!(
            server.await.unwrap(),
            Err(IpcError::PeerRefused { .. })
        ));
    }

    #[tokio::test]
    async fn garbage_and_unexpected_fds_close_with_an_error() {
        let path = tmp_sock("garbage");
        let mut l = Listener::bind(&path, Channel::State, vec![me()]).unwrap();
        let server = tokio::spawn(async move {
            let mut c = l.accept().await.unwrap().handshake().await.unwrap();
            let first = c.recv::<ToState>().await.err().unwrap();
            let second = c.recv::<ToState>().await.err().unwrap();
            (first, second)
        });
        let c = connect(&path, Channel::State).await.unwrap();
        c.sender.sock.send(&[0xff, 0xff, 0xff]).await.unwrap();
        // A valid List request, but with an fd attached that it does not declare.
        let mut buf = Vec::new();
        codec::encode(&ToState::List { after: None }, &mut buf).unwrap();
        let (a, _b) = std::io::pipe().unwrap();
        let mut cmsg = [0u8; CMSG_BUF_LEN];
        let mut anc = AncillaryMessageWriter::new(&mut cmsg);
        anc.add_fds([a.as_fd()]).unwrap();
        c.sender
            .sock
            .send_with_ancillary(&buf, &mut anc)
            .await
            .unwrap();
        let (first, second) = server.await.unwrap();
        assert!(matches!(first, IpcError::Malformed(_)), "{first}");
        assert!(
            matches!(
                second,
                IpcError::UnexpectedFds {
                    expected: 0,
                    got: 1,
                    ..
                }
            ),
            "{second}"
        );
    }
}
