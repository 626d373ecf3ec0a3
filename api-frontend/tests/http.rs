//! The monitoring service, the `/v1/` event-stream routes and the Prometheus listener,
//! through the real TLS listener and server, with real clients: who may read what, what
//! each refusal looks like, and that every call is audited. The backends are absent, so
//! calls that pass the gate end UNAVAILABLE; the lead's suite covers them end to end.

mod support;

use std::sync::Arc;
use std::time::Duration;

use joblet_api::audit::AuditLog;
use joblet_api::server;
use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_api_proto::monitoring_service_client::MonitoringServiceClient;
use joblet_api_proto::{EmptyRequest, StreamMetricsRequest};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Credentials, Pki, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;

/// One HTTP/1.1 exchange over mutual TLS (ALPN `http/1.1`): status, headers, body.
async fn http1_get(
    port: u16,
    ca_pem: &str,
    client: &Credentials,
    method: &str,
    path: &str,
) -> (u16, String, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify; what arrived is the answer.
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[tokio::test]
async fn monitoring_is_readable_by_viewers_and_refused_without_a_role() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let viewer = pki.client("viewer-client", Some("viewer"));
    let mut mon = MonitoringServiceClient::new(server.channel(Some(&viewer)).await.unwrap());

    let status = mon
        .get_system_status(EmptyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.available);
    let host = status.host.unwrap();
    assert_eq!(host.node_id, "test-node");
    assert!(!host.kernel_version.is_empty() && !host.boot_time.is_empty());
    assert!(status.cpu.unwrap().cores >= 1);
    assert!(status.memory.unwrap().total_bytes > 0);
    assert!(status.processes.unwrap().total_processes > 0);
    assert_eq!(status.server_version.unwrap().component, "joblet-api");

    let mut stream = mon
        .stream_system_metrics(StreamMetricsRequest {
            interval_seconds: 1,
            metric_types: vec!["cpu".into(), "memory".into()],
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(m.cpu.is_some() && m.memory.is_some() && m.host.is_some());
        assert!(m.processes.is_none() && m.disks.is_empty());
    }
    drop(stream);

    for (interval_seconds, types) in [(1, vec!["gpu".to_string()]), (-1, vec![])] {
        let err = mon
            .stream_system_metrics(StreamMetricsRequest {
                interval_seconds,
                metric_types: types,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }

    let intern = pki.client("intern", Some("intern"));
    let mut refused = MonitoringServiceClient::new(server.channel(Some(&intern)).await.unwrap());
    let err = refused
        .get_system_status(EmptyRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let line = server
        .wait_for_audit(|v| v["method"] == "GetSystemStatus" && v["cn"] == "viewer-client")
        .await;
    assert_eq!(
        (&line["decision"], &line["code"], &line["role"]),
        (&"allowed".into(), &"OK".into(), &"viewer".into())
    );
    server
        .wait_for_audit(|v| v["method"] == "StreamSystemMetrics" && v["code"] == "INVALID_ARGUMENT")
        .await;
    server
        .wait_for_audit(|v| {
            v["method"] == "GetSystemStatus" && v["cn"] == "intern" && v["decision"] == "denied"
        })
        .await;
    server.stop().await;
}

#[tokio::test]
async fn event_streams_pass_the_same_gate_over_http1() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let viewer = pki.client("viewer-client", Some("reader"));
    let intern = pki.client("intern", Some("intern"));
    let get = |who: &Credentials, path: &str| {
        let (ca, who, path) = (server.ca_pem.clone(), who.clone(), path.to_owned());
        let port = server.port;
        async move { http1_get(port, &ca, &who, "GET", &path).await }
    };

    // A viewer gets past the gate; stated is absent, so the job cannot be looked up.
    let (status, head, body) = get(&viewer, "/v1/jobs/0b7c1a2e/logs?follow=true").await;
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(json(&body)["code"], "UNAVAILABLE");
    let line = server
        .wait_for_audit(|v| v["method"] == "GetJobLogs" && v["cn"] == "viewer-client")
        .await;
    assert_eq!(line["decision"], "allowed");
    assert_eq!(line["role"], "viewer");
    assert_eq!(line["code"], "UNAVAILABLE");

    let (status, _, body) = get(&viewer, "/v1/jobs/0b7c1a2e/metrics").await;
    assert_eq!(status, 503, "{body}");
    server
        .wait_for_audit(|v| v["method"] == "StreamJobMetrics" && v["cn"] == "viewer-client")
        .await;

    // No role: refused for every route, and audited.
    for path in ["/v1/jobs/0b7c1a2e/logs", "/v1/jobs/0b7c1a2e/metrics"] {
        let (status, _, body) = get(&intern, path).await;
        assert_eq!(status, 403, "{path}: {body}");
        let v = json(&body);
        assert_eq!(v["code"], "PERMISSION_DENIED");
        assert!(v["message"].as_str().unwrap().contains("intern"), "{v}");
    }
    server
        .wait_for_audit(|v| {
            v["method"] == "GetJobLogs" && v["cn"] == "intern" && v["decision"] == "denied"
        })
        .await;

    // Bad requests are named, and audited like calls to unknown methods.
    let (status, _, body) = get(&viewer, "/v1/jobs/0b7c1a2e/stdout").await;
    assert_eq!(status, 404, "{body}");
    server
        .wait_for_audit(|v| v["method"] == "/v1/jobs/0b7c1a2e/stdout" && v["decision"] == "denied")
        .await;
    let (status, _, body) = get(&viewer, "/v1/jobs/0b7c1a2e/logs?follow=perhaps").await;
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["message"].as_str().unwrap().contains("follow"));
    let (status, _, body) = get(&viewer, "/v1/jobs/not-a-job!/logs").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["code"], "INVALID_ARGUMENT");
    let (status, head, _) = http1_get(
        server.port,
        &server.ca_pem,
        &viewer,
        "DELETE",
        "/v1/jobs/0b7c1a2e/logs",
    )
    .await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get"), "{head}");

    // gRPC on the same listener is unchanged.
    let mut jobs = JobServiceClient::new(server.channel(Some(&viewer)).await.unwrap());
    let err = jobs.list_jobs(EmptyRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn prometheus_listener_shows_rpc_counts_and_no_names() {
    let pki = Pki::new("test-ca");
    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(dir.path(), &pki.server(), &pki.ca_pem());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_port = metrics.local_addr().unwrap().port();
    let audit = AuditLog::open(&settings.audit_log).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server::serve_with_metrics(&settings, listener, Some(metrics), audit, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    let viewer = pki.client("secret-viewer-name", Some("viewer"));
    let channel = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca_pem()))
                .domain_name("localhost")
                .identity(tonic::transport::Identity::from_pem(
                    &viewer.cert_pem,
                    &viewer.key_pem,
                )),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut mon = MonitoringServiceClient::new(channel.clone());
    mon.get_system_status(EmptyRequest {}).await.unwrap();
    let mut jobs = JobServiceClient::new(channel);
    let _ = jobs.list_jobs(EmptyRequest {}).await.unwrap_err();

    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port))
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "joblet_rpc_duration_seconds_count{method=\"GetSystemStatus\",code=\"OK\"} 1",
        "joblet_rpc_duration_seconds_count{method=\"ListJobs\",code=\"UNAVAILABLE\"} 1",
        "joblet_state_store_up 0",
        "joblet_audit_log_healthy 1",
        "joblet_audit_write_failures_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(!text.contains("secret-viewer-name") && !text.contains("test-node"));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
}
