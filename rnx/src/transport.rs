//! The TCP connections under the gRPC channel, counting the bytes written to them.
//!
//! Uploads travel inline in one RunJob message, so the only way to show how much of it has
//! left is to count what the transport writes; the count includes TLS and HTTP/2 framing,
//! a few bytes per 16 KiB, which a progress bar can ignore. TLS is layered on top of these
//! streams by tonic, as with its own connector.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::Service;
use tonic::transport::Uri;

/// Bytes written so far by every connection made through one [`CountingConnector`].
#[derive(Debug, Clone, Default)]
pub struct SentBytes(Arc<AtomicU64>);

impl SentBytes {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Opens plain TCP connections (with TCP_NODELAY, as tonic's connector does) to the
/// endpoint's host and port.
#[derive(Debug, Clone, Default)]
pub struct CountingConnector {
    sent: SentBytes,
}

impl CountingConnector {
    pub fn new(sent: SentBytes) -> Self {
        CountingConnector { sent }
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TokioIo<Counted>>> + Send>>;

impl Service<Uri> for CountingConnector {
    type Response = TokioIo<Counted>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let sent = self.sent.clone();
        Box::pin(async move {
            let (host, port) = host_and_port(&uri)?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let inner = BufReader::with_capacity(READ_BUFFER, tcp);
            Ok(TokioIo::new(Counted { inner, sent }))
        })
    }
}

/// The host (without IPv6 brackets) and port of an `https://host:port` URI.
pub fn host_and_port(uri: &Uri) -> io::Result<(String, u16)> {
    let host = uri.host().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{uri}' names no host"),
        )
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), uri.port_u16().unwrap_or(443)))
}

/// rustls reads at most 4 KiB a call; a followed log arrives in full 16 KiB records, so
/// without this buffer it took four or five `recv`s per record.
const READ_BUFFER: usize = 64 * 1024;

/// A TCP stream (reads buffered) that adds every byte it writes to a shared count.
#[derive(Debug)]
pub struct Counted {
    inner: BufReader<TcpStream>,
    sent: SentBytes,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.sent.add(*n);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result {
            self.sent.add(*n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn hosts_and_ports_come_from_the_uri() {
        let uri: Uri = "https://127.0.0.1:50051".parse().unwrap();
        assert_eq!(host_and_port(&uri).unwrap(), ("127.0.0.1".into(), 50051));
        let uri: Uri = "https://[::1]:7".parse().unwrap();
        assert_eq!(host_and_port(&uri).unwrap(), ("::1".into(), 7));
        let uri: Uri = "https://joblet.example".parse().unwrap();
        assert_eq!(host_and_port(&uri).unwrap().1, 443);
    }

    #[tokio::test]
    async fn written_bytes_are_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            sock.read_to_end(&mut all).await.unwrap();
            all.len()
        });
        let sent = SentBytes::default();
        let mut connector = CountingConnector::new(sent.clone());
        let uri: Uri = format!("https://{addr}").parse().unwrap();
        let mut io = connector.call(uri).await.unwrap().into_inner();
        io.write_all(&[7u8; 100_000]).await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 100_000);
        assert_eq!(sent.get(), 100_000);
    }

    #[tokio::test]
    async fn refused_connections_are_io_errors() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let uri: Uri = format!("https://127.0.0.1:{port}").parse().unwrap();
        let err = CountingConnector::default().call(uri).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
