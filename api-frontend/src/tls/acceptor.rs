//! Accepts TCP connections and completes the TLS handshake in a task per connection, so a
//! slow or hostile client cannot hold up the others. Only connections whose client
//! certificate verified reach gRPC, carrying the identity read from it; every failed
//! handshake is logged and audited.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::audit::{AuditEvent, AuditLog};
use crate::identity::{IdentityError, Peer, PeerIdentity};

/// Limits on connections, against floods of idle or half-open clients.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Open connections (handshaking or established) at once; more wait in the backlog.
    pub max_connections: usize,
    /// Time a client has to complete the handshake.
    pub handshake_timeout: Duration,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What TLS runs over: the socket with a buffer each way. rustls hands every 16 KiB record
/// to the socket in a call of its own and reads at most 4 KiB a call. h2 flushes after every
/// DATA frame, which empties the buffer: to a client that takes large frames (rnx asks for
/// 1 MiB) a followed log leaves in one `writev` per four records; to one that keeps the
/// 16 KiB default, in one write per record, as before. A large request comes in with one
/// read per 32 KiB.
type Socket = BufStream<TcpStream>;
const READ_BUFFER: usize = 32 * 1024;
const WRITE_BUFFER: usize = 64 * 1024;

/// A TLS connection with a verified client; tonic hands its [`Peer`] to every request.
pub struct PeerStream {
    inner: TlsStream<Socket>,
    peer: Peer,
    _slot: OwnedSemaphorePermit,
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The stream of verified connections for `serve_with_incoming`. The accept loop ends when
/// the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    audit: AuditLog,
    limits: AcceptLimits,
) -> ReceiverStream<io::Result<PeerStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(config),
        audit,
        limits,
        tx,
    ));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    audit: AuditLog,
    limits: AcceptLimits,
    tx: mpsc::Sender<io::Result<PeerStream>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = tokio::select! {
            _ = tx.closed() => return,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (tcp, addr) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let audit = audit.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match handshake(acceptor, tcp, addr, limits.handshake_timeout).await {
                Ok((inner, identity)) => {
                    tracing::debug!(peer = %addr, cn = %identity.cn, role = ?identity.role, "client authenticated");
                    let stream = PeerStream {
                        inner,
                        peer: Peer(Arc::new(identity)),
                        _slot: slot,
                    };
                    let _ = tx.send(Ok(stream)).await;
                }
                Err(reason) => {
                    tracing::warn!(peer = %addr, reason = %reason, "TLS handshake refused");
                    audit.record(AuditEvent::auth_failed(&addr.to_string(), reason));
                }
            }
        });
    }
}

/// Completes the handshake and reads the verified client's identity; the error is the
/// reason recorded in the audit log.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    limit: Duration,
) -> Result<(TlsStream<Socket>, PeerIdentity), String> {
    let socket = BufStream::with_capacity(READ_BUFFER, WRITE_BUFFER, tcp);
    let accepting = async {
        match acceptor.accept(socket).into_fallible().await {
            Ok(tls) => Ok(tls),
            Err((e, mut socket)) => {
                // The alert that tells the client why is still in the buffer: send it.
                let _ = socket.flush().await;
                Err(e)
            }
        }
    };
    let tls = match tokio::time::timeout(limit, accepting).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
        Err(_) => return Err(format!("no TLS handshake within {} s", limit.as_secs())),
    };
    let (_, conn) = tls.get_ref();
    let identity = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(IdentityError::NoCertificate)
        .and_then(|leaf| PeerIdentity::from_certificate(addr, leaf))
        .map_err(|e| e.to_string())?;
    Ok((tls, identity))
}
