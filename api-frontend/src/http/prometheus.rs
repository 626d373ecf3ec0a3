//! The Prometheus listener (`monitoring.bind_address`): plain HTTP/1.1, `GET /metrics`.
//!
//! It has no TLS and no authentication, as scrapers expect; that is acceptable only because
//! it shows counts and latencies and nothing else (no job id, command, user or secret: see
//! [`crate::monitoring::exporter`]). Bind it to a loopback or management address.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tonic::codegen::http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::monitoring::exporter::Exporter;
use crate::monitoring::exposition::CONTENT_TYPE;

/// Scrapers connected at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, kept alive or not (scrapers reconnect).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Serves `/metrics` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>, stop: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Prometheus metrics at /metrics (plain HTTP, no authentication: counts and latencies only)");
    }
    // Ends with this function, however it ends (returning, or its task aborted).
    let _census = AbortOnDrop(tokio::spawn(exporter.clone().run_census()));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let stop_signal = stopped(stop);
    tokio::pin!(stop_signal);
    loop {
        let slot = tokio::select! {
            _ = &mut stop_signal => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut stop_signal => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let exporter = exporter.clone();
                async move { Ok::<_, Infallible>(answer(&exporter, &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                tracing::debug!(%peer, error = %e, "metrics connection ended");
            }
            drop(slot);
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn answer(exporter: &Exporter, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found; the metrics are at /metrics\n",
        );
    }
    match *req.method() {
        Method::GET => {}
        Method::HEAD => return text(StatusCode::OK, ""),
        _ => {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(exporter.render().await)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::errors::LinkError;
    use crate::monitoring::exporter::ListJobs;
    use crate::monitoring::exposition::parse;
    use crate::monitoring::rpc_stats::RpcStats;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn request(port: u16, head: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_over_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&dir.path().join("audit.log")).unwrap();
        let list: ListJobs = Arc::new(|| {
            Box::pin(async { Err(LinkError::unavailable("stated", "not in this test")) })
        });
        let exporter = Arc::new(Exporter::new(list, audit, Arc::new(RpcStats::default())));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, exporter, stop_rx));

        let resp = request(
            port,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let p = parse::parse(body).unwrap_or_else(|m| panic!("{m}\n{body}"));
        assert_eq!(p.value("joblet_state_store_up", &[]), Some(0.0));

        let resp = request(
            port,
            "GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        let resp = request(
            port,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
        let resp = request(port, "garbage\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the listener stops")
            .unwrap();
    }
}
