//! Assembles the gRPC server: TLS acceptor, audit layer, the five services, the `/v1/`
//! HTTP routes, limits, the Prometheus listener, and the background tasks that keep the
//! spawner link and the job lifecycle going.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use joblet_api_proto::job_service_server::JobServiceServer;
use joblet_api_proto::monitoring_service_server::MonitoringServiceServer;
use joblet_api_proto::network_service_server::NetworkServiceServer;
use joblet_api_proto::runtime_service_server::RuntimeServiceServer;
use joblet_api_proto::volume_service_server::VolumeServiceServer;
use joblet_ipc_proto::settings::FrontendSettings;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::Server;

use crate::app::{App, AppError};
use crate::audit::AuditLog;
use crate::audit::layer::UnknownRpcAuditLayer;
use crate::gate::Gate;
use crate::http::{self, HttpLayer};
use crate::jobs::lifecycle;
use crate::jobs::service::JobApi;
use crate::monitoring::MonitoringApi;
use crate::monitoring::exporter::{self, Exporter};
use crate::monitoring::rpc_stats::RpcStats;
use crate::scheduler;
use crate::services::Unimplemented;
use crate::tls::acceptor::{self, AcceptLimits};
use crate::tls::{self, TlsSetupError};

/// Room in a RunJob request beyond its uploads' contents: the other fields, each upload's
/// path and framing.
const RUN_JOB_HEADROOM: usize = 16 * 1024 * 1024;
/// The other services take small requests only.
const MAX_RECEIVE_SMALL: usize = 4 * 1024 * 1024;
/// Concurrent calls (HTTP/2 streams) per connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Our own pings find dead clients; the Python SDK's pings every 30 s are always allowed
/// (the HTTP/2 server here has no ping-rate policy that would refuse them).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// After a shutdown request, how long open calls (log streams) may continue.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Serves the public API on `listener` until `shutdown` completes.
pub async fn serve(
    settings: &FrontendSettings,
    listener: TcpListener,
    audit: AuditLog,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_metrics(settings, listener, None, audit, shutdown).await
}

/// Like [`serve`], also serving Prometheus metrics on `metrics` (plain HTTP) if given.
pub async fn serve_with_metrics(
    settings: &FrontendSettings,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    audit: AuditLog,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = tls::server_config(
        &settings.server_cert_pem,
        &settings.server_key_pem,
        &settings.ca_cert_pem,
    )?;
    let gate = Gate::new(audit.clone());
    let app = Arc::new(App::new(settings, gate.clone())?);

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let link = tokio::spawn(app.spawner.clone().maintain(events_tx));
    let lifecycle = tokio::spawn(lifecycle::run(app.clone(), events_rx));
    let scheduler = tokio::spawn(scheduler::run(app.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let exporter = Arc::new(Exporter::new(
        exporter::stated_records(app.clone()),
        audit.clone(),
        Arc::new(RpcStats::default()),
    ));
    let prometheus = metrics.map(|l| {
        tokio::spawn(http::prometheus::serve(
            l,
            exporter.clone(),
            stop_rx.clone(),
        ))
    });

    let incoming = acceptor::incoming(listener, tls, audit.clone(), AcceptLimits::default());
    let others = Unimplemented::new(gate);
    let router = Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        // Browsers and curl may speak HTTP/1.1 to the `/v1/` event streams.
        .accept_http1(true)
        .layer(HttpLayer::new(app.clone(), exporter.rpc_stats()))
        .layer(UnknownRpcAuditLayer::new(audit))
        .add_service(
            JobServiceServer::new(JobApi::new(app.clone()))
                .max_decoding_message_size(job_request_limit(settings.max_upload_bytes)),
        )
        .add_service(
            NetworkServiceServer::new(others.clone()).max_decoding_message_size(MAX_RECEIVE_SMALL),
        )
        .add_service(
            VolumeServiceServer::new(others.clone()).max_decoding_message_size(MAX_RECEIVE_SMALL),
        )
        .add_service(
            MonitoringServiceServer::new(MonitoringApi::new(
                app.gate.clone(),
                settings.node_id.clone(),
                settings.system_interval_ms,
            ))
            .max_decoding_message_size(MAX_RECEIVE_SMALL),
        )
        .add_service(
            RuntimeServiceServer::new(others).max_decoding_message_size(MAX_RECEIVE_SMALL),
        );

    let serving = router.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
    // Graceful shutdown waits for open calls; a following log stream could wait forever.
    let deadline = async move {
        stopped(stop_rx).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = serving => r.map_err(ServeError::from),
        _ = deadline => {
            tracing::info!("open calls did not end within the shutdown grace; closing them");
            Ok(())
        }
    };
    link.abort();
    lifecycle.abort();
    scheduler.abort();
    if let Some(p) = prometheus {
        p.abort();
    }
    result
}

/// The largest JobService request: uploads travel inline in RunJob, up to
/// `max_upload_bytes` (`grpc.maxRecvMsgSize`), plus headroom.
pub fn job_request_limit(max_upload_bytes: u64) -> usize {
    usize::try_from(max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(RUN_JOB_HEADROOM)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
