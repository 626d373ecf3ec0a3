//! The real TLS listener and gRPC server, driven by a real tonic client: who gets in,
//! what each role may call, and that every refusal reaches the audit log.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_api_proto::network_service_client::NetworkServiceClient;
use joblet_api_proto::{
    CreateNetworkRequest, EmptyRequest, GetJobTelematicsRequest, RunJobRequest,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Credentials, Pki, Server};
use tonic::Code;

fn is_auth_failure(v: &serde_json::Value) -> bool {
    v["event"] == "auth_failed" && v["decision"] == "denied"
}

fn is_call(v: &serde_json::Value, method: &str, cn: &str, code: &str) -> bool {
    v["event"] == "call" && v["method"] == method && v["cn"] == cn && v["code"] == code
}

#[tokio::test]
async fn admin_gets_in_and_unimplemented_methods_say_so() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let admin = pki.client("admin-client", Some("admin"));
    let mut jobs = JobServiceClient::new(server.channel(Some(&admin)).await.unwrap());
    let err = jobs
        .get_job_telematics(GetJobTelematicsRequest {
            job_uuid: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(
        err.message().contains("GetJobTelematics: kernel event"),
        "{}",
        err.message()
    );
    let line = server
        .wait_for_audit(|v| is_call(v, "GetJobTelematics", "admin-client", "UNIMPLEMENTED"))
        .await;
    assert_eq!(line["decision"], "allowed");
    assert_eq!(line["role"], "admin");
    assert_eq!(line["service"], "JobService");
    assert!(line["serial"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(line["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    server.stop().await;
}

#[tokio::test]
async fn no_client_certificate_fails_the_handshake() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    // TLS 1.3 lets the client finish before the server refuses, so the failure may show
    // at connect or at the first call; either way nothing gets through.
    let refused = match server.channel(None).await {
        Err(_) => true,
        Ok(ch) => JobServiceClient::new(ch)
            .list_jobs(EmptyRequest {})
            .await
            .is_err(),
    };
    assert!(refused);
    let line = server.wait_for_audit(is_auth_failure).await;
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("certificate"), "{reason}");
    assert!(
        !server.audit_lines().iter().any(|v| v["event"] == "call"),
        "no call may run without a certificate"
    );
    server.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_fails_the_handshake() {
    let pki = Pki::new("test-ca");
    let stranger = Pki::new("other-ca").client("admin-client", Some("admin"));
    let server = Server::start(&pki).await;
    let refused = match server.channel(Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => JobServiceClient::new(ch)
            .list_jobs(EmptyRequest {})
            .await
            .is_err(),
    };
    assert!(refused);
    let line = server.wait_for_audit(is_auth_failure).await;
    assert!(
        line["reason"].as_str().unwrap().contains("certificate"),
        "{line}"
    );
    assert!(!server.audit_lines().iter().any(|v| v["event"] == "call"));
    server.stop().await;
}

#[tokio::test]
async fn tls12_client_is_refused() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let admin = pki.client("admin-client", Some("admin"));
    let err = tls12_handshake(&server, &admin).await.unwrap_err();
    assert!(!err.is_empty());
    let line = server.wait_for_audit(is_auth_failure).await;
    let reason = line["reason"].as_str().unwrap().to_lowercase();
    assert!(
        reason.contains("version") || reason.contains("incompatible"),
        "{reason}"
    );
    server.stop().await;
}

/// A raw TLS 1.2-only handshake with a valid client certificate.
async fn tls12_handshake(server: &Server, client: &Credentials) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector
        .connect(name, tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn unknown_or_missing_ou_is_denied_everything() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    for (cn, ou) in [("intern-client", Some("intern")), ("plain-client", None)] {
        let creds = pki.client(cn, ou);
        let channel = server.channel(Some(&creds)).await.unwrap();
        let err = JobServiceClient::new(channel.clone())
            .list_jobs(EmptyRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(
            err.message().contains("names no known role"),
            "{}",
            err.message()
        );
        // Even a method that does not exist yet is refused on the role first.
        let err = NetworkServiceClient::new(channel)
            .list_networks(EmptyRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        let line = server
            .wait_for_audit(|v| is_call(v, "ListJobs", cn, "PERMISSION_DENIED"))
            .await;
        assert_eq!(line["decision"], "denied");
        assert_eq!(line["role"], "none");
    }
    server.stop().await;
}

#[tokio::test]
async fn viewer_reads_but_cannot_run() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let viewer = pki.client("viewer-client", Some("Viewer"));
    let channel = server.channel(Some(&viewer)).await.unwrap();
    let mut jobs = JobServiceClient::new(channel.clone());

    let err = jobs
        .run_job(RunJobRequest {
            command: "echo".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("JobService/RunJob"),
        "{}",
        err.message()
    );

    let err = NetworkServiceClient::new(channel)
        .create_network(CreateNetworkRequest {
            name: "n".into(),
            cidr: "10.1.0.0/24".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Past RBAC: stated is absent, so the answer is UNAVAILABLE, naming it.
    let err = jobs.list_jobs(EmptyRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("stated"), "{}", err.message());

    server
        .wait_for_audit(|v| is_call(v, "RunJob", "viewer-client", "PERMISSION_DENIED"))
        .await;
    let listed = server
        .wait_for_audit(|v| is_call(v, "ListJobs", "viewer-client", "UNAVAILABLE"))
        .await;
    assert_eq!(listed["decision"], "allowed");
    assert_eq!(listed["role"], "viewer");
    server.stop().await;
}

#[tokio::test]
async fn admin_requests_are_validated_and_secrets_never_audited() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let admin = pki.client("admin-client", Some("admin"));
    let mut jobs = JobServiceClient::new(server.channel(Some(&admin)).await.unwrap());
    let secret = "s3cr3t-value-that-must-not-leak";
    let secrets = HashMap::from([("API_TOKEN".to_owned(), secret.to_owned())]);

    let err = jobs
        .run_job(RunJobRequest {
            command: "nvidia-smi".into(),
            gpu_count: 1,
            secret_environment: secrets.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "this host has no GPU support");

    let err = jobs
        .run_job(RunJobRequest {
            command: "echo".into(),
            environment: HashMap::from([("JOBLET_MODE".to_owned(), "x".to_owned())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("reserved"), "{}", err.message());

    // A valid request waits briefly for the absent spawner, then says so.
    let err = jobs
        .run_job(RunJobRequest {
            command: "echo".into(),
            secret_environment: secrets,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "spawner is restarting, retry");

    server
        .wait_for_audit(|v| is_call(v, "RunJob", "admin-client", "UNAVAILABLE"))
        .await;
    let text = std::fs::read_to_string(&server.audit_path).unwrap();
    assert!(!text.contains(secret), "a secret reached the audit log");
    assert!(
        !text.contains("API_TOKEN"),
        "request contents reached the audit log"
    );
    server.stop().await;
}

#[tokio::test]
async fn audit_log_is_private() {
    use std::os::unix::fs::MetadataExt;
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let mode = std::fs::metadata(&server.audit_path).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600);
    server.stop().await;
}

#[tokio::test]
async fn calls_to_methods_outside_the_contract_are_audited() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let admin = pki.client("admin-client", Some("admin"));
    let mut grpc = tonic::client::Grpc::new(server.channel(Some(&admin)).await.unwrap());
    grpc.ready().await.unwrap();
    // RunWorkflow was removed from the contract; old SDKs still call it.
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/joblet.JobService/RunWorkflow");
    let codec = tonic_prost::ProstCodec::<EmptyRequest, EmptyRequest>::default();
    let err = grpc
        .unary(tonic::Request::new(EmptyRequest {}), path, codec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    let line = server
        .wait_for_audit(|v| v["method"] == "/joblet.JobService/RunWorkflow")
        .await;
    assert_eq!(line["cn"], "admin-client");
    assert_eq!(line["decision"], "denied");
    assert_eq!(line["code"], "UNIMPLEMENTED");
    server.stop().await;
}
