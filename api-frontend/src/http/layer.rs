//! The outermost layer of the server: requests for `/v1/` are answered here; every other
//! request goes on to gRPC, timed for Prometheus (until its response starts, labelled with
//! the method and the final gRPC code).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::{Code, Status};
use tower_layer::Layer;

use super::route::{self, Route, RouteError};
use super::{job_logs, job_metrics, reply};
use crate::app::App;
use crate::audit::AuditEvent;
use crate::identity::Peer;
use crate::monitoring::rpc_stats::RpcStats;
use crate::rbac::Rpc;

#[derive(Clone)]
pub struct HttpLayer {
    app: Arc<App>,
    stats: Arc<RpcStats>,
}

impl HttpLayer {
    pub fn new(app: Arc<App>, stats: Arc<RpcStats>) -> HttpLayer {
        HttpLayer { app, stats }
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpRoutes<S>;
    fn layer(&self, inner: S) -> HttpRoutes<S> {
        HttpRoutes {
            inner,
            app: self.app.clone(),
            stats: self.stats.clone(),
        }
    }
}

#[derive(Clone)]
pub struct HttpRoutes<S> {
    inner: S,
    app: Arc<App>,
    stats: Arc<RpcStats>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for HttpRoutes<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if route::is_http_path(req.uri().path()) {
            let app = self.app.clone();
            return Box::pin(async move { Ok(handle(app, req).await) });
        }
        let rpc = Rpc::from_path(req.uri().path());
        let stats = self.stats.clone();
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(observe(stats, rpc, started.elapsed(), resp))
        })
    }
}

async fn handle(app: Arc<App>, req: Request<Body>) -> Response<Body> {
    let peer = req.extensions().get::<Peer>().cloned();
    let path = req.uri().path();
    let route = match route::parse(req.method(), path, req.uri().query()) {
        Ok(r) => r,
        Err(e) => return refuse(&app, peer.as_ref(), path, &e),
    };
    match route {
        Route::JobLogs { job, follow } => match route::last_event_id(req.headers()) {
            Ok(after) => job_logs::serve(app, peer, &job, follow, after).await,
            Err(e) => refuse(&app, peer.as_ref(), path, &e),
        },
        Route::JobMetrics { job } => job_metrics::serve(app, peer, &job).await,
    }
}

/// Answers a request no route takes, and audits it like a call to an unknown method.
fn refuse(app: &App, peer: Option<&Peer>, path: &str, e: &RouteError) -> Response<Body> {
    app.gate.audit().record(
        AuditEvent::unknown_path(peer.map(|p| &*p.0), path).with_reason(Some(e.to_string())),
    );
    reply::route_error(e)
}

/// The gRPC code a response carries in `headers` (a trailers-only response, or trailers).
fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    let v = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(Code::from_i32(v))
}

/// Records the call now if its code is already known, else when its trailers pass.
fn observe(
    stats: Arc<RpcStats>,
    rpc: Option<Rpc>,
    latency: Duration,
    resp: Response<Body>,
) -> Response<Body> {
    if let Some(code) = grpc_code(resp.headers()) {
        stats.observe(rpc, code, latency);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let probe = Probe {
        stats,
        rpc,
        latency,
    };
    Response::from_parts(
        parts,
        Body::new(Observed {
            inner: body,
            probe: Some(probe),
        }),
    )
}

struct Probe {
    stats: Arc<RpcStats>,
    rpc: Option<Rpc>,
    latency: Duration,
}

/// A response body that records its call when the trailers (with the gRPC code) pass, or
/// as cancelled if it is dropped before.
struct Observed {
    inner: Body,
    probe: Option<Probe>,
}

impl Observed {
    fn finish(&mut self, code: Code) {
        if let Some(p) = self.probe.take() {
            p.stats.observe(p.rpc, code, p.latency);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code) {
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(s))) => this.finish(s.code()),
            Poll::Ready(None) => this.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tonic::codegen::http::HeaderValue;

    fn with_trailers(code: &'static str) -> Body {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(code));
        let frames = vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ];
        Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    fn count(stats: &RpcStats, method: &str, code: &str) -> u64 {
        stats
            .snapshot()
            .into_iter()
            .find(|(m, c, _)| *m == method && *c == code)
            .map_or(0, |(_, _, h)| h.count)
    }

    #[tokio::test]
    async fn codes_come_from_headers_or_trailers_or_a_drop() {
        let stats = Arc::new(RpcStats::default());
        let mut trailers_only = Response::new(Body::empty());
        trailers_only
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static("7"));
        let ms = Duration::from_millis(1);
        drop(observe(stats.clone(), Some(Rpc::RunJob), ms, trailers_only));
        assert_eq!(count(&stats, "RunJob", "PERMISSION_DENIED"), 1);

        let resp = observe(
            stats.clone(),
            Some(Rpc::ListJobs),
            ms,
            Response::new(with_trailers("0")),
        );
        assert_eq!(
            count(&stats, "ListJobs", "OK"),
            0,
            "not before the trailers"
        );
        resp.into_body().collect().await.unwrap();
        assert_eq!(count(&stats, "ListJobs", "OK"), 1);

        let resp = observe(
            stats.clone(),
            Some(Rpc::GetJobLogs),
            ms,
            Response::new(with_trailers("0")),
        );
        drop(resp);
        assert_eq!(count(&stats, "GetJobLogs", "CANCELLED"), 1);
        assert_eq!(count(&stats, "GetJobLogs", "OK"), 0);
    }
}
