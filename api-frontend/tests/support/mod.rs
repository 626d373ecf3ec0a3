//! Test support: a throw-away PKI made with rcgen, and the real frontend server started
//! on 127.0.0.1:0 with its backends' sockets pointing nowhere.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use joblet_api::audit::AuditLog;
use joblet_api::server;
use joblet_ipc_proto::settings::{DefaultLimits, FrontendSettings, Listen, LogFormat, Logging};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that issues server and client certificates.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, "CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn server(&self) -> Credentials {
        let mut params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "joblet-server");
        dn.push(DnType::OrganizationalUnitName, "Server");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with `ou` as its Subject OU (none if `None`).
    pub fn client(&self, cn: &str, ou: Option<&str>) -> Credentials {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            dn.push(DnType::OrganizationalUnitName, ou);
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Credentials {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The frontend, serving until dropped.
pub struct Server {
    pub port: u16,
    pub audit_path: PathBuf,
    pub ca_pem: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(pki: &Pki) -> Server {
        Server::start_in(pki, tempfile::tempdir().unwrap(), |_| {}).await
    }

    /// Starts with the backend sockets (`spawner.sock`, `stated.sock`, `persistd.sock`)
    /// and the audit log in `dir`, after `tweak` adjusted the settings.
    pub async fn start_in(
        pki: &Pki,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut FrontendSettings),
    ) -> Server {
        let server_creds = pki.server();
        let mut settings = settings(dir.path(), &server_creds, &pki.ca_pem());
        tweak(&mut settings);
        let audit_path = settings.audit_log.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let audit = AuditLog::open(&audit_path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            server::serve(&settings, listener, audit, shutdown)
                .await
                .unwrap();
        });
        Server {
            port,
            audit_path,
            ca_pem: pki.ca_pem(),
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A gRPC channel presenting `client` (or no certificate), trusting our CA.
    pub async fn channel(
        &self,
        client: Option<&Credentials>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        if let Some(c) = client {
            tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
        }
        Endpoint::from_shared(format!("https://127.0.0.1:{}", self.port))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect()
            .await
    }

    /// Every audit line written so far, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit_path).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
            .collect()
    }

    /// Waits (up to 5 s) for an audit line matching `pred`.
    pub async fn wait_for_audit(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..100 {
            if let Some(v) = self.audit_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no matching audit line; the log holds:\n{}",
            std::fs::read_to_string(&self.audit_path).unwrap_or_default()
        );
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops within its shutdown grace")
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn settings(dir: &Path, server: &Credentials, ca_pem: &str) -> FrontendSettings {
    FrontendSettings {
        logging: Logging {
            level: "info".into(),
            format: LogFormat::Text,
        },
        listen: vec![Listen::Tcp { fd: -1 }],
        address: "127.0.0.1:0".into(),
        node_id: "test-node".into(),
        server_cert_pem: server.cert_pem.clone(),
        server_key_pem: server.key_pem.clone(),
        ca_cert_pem: ca_pem.to_owned(),
        // Nothing listens here: RBAC and TLS refusals happen before any backend call.
        spawner_socket: dir.join("spawner.sock"),
        state_socket: dir.join("stated.sock"),
        logs_socket: dir.join("persistd.sock"),
        audit_log: dir.join("audit.log"),
        data_dir: dir.join("data"),
        defaults: DefaultLimits {
            cpu_percent: 0,
            memory_mb: 0,
            io_bps: 0,
            pids_max: 512,
            disk_mb: 0,
        },
        stop_grace_ms: 1000,
        max_upload_bytes: 1 << 20,
        max_concurrent_jobs: 0,
        default_timeout_ms: 0,
        system_interval_ms: 10_000,
    }
}
