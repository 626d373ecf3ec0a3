//! `joblet init` into a temporary directory, checked the way its readers will use it: the
//! files and modes, the certificates through rustls' own verifiers (what the frontend and
//! rnx run), their names, key usages and roles, and the configs parsed back.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::JOBLET;
use joblet_ipc_proto::settings::{Enforcement, UserNamespaces};
use joblet_supervisor::config;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry;
use x509_parser::prelude::{FromDer, X509Certificate};

fn init(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(JOBLET)
        .args(["init", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn der(pem: &str) -> CertificateDer<'static> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert_eq!(pem.label, "CERTIFICATE");
    CertificateDer::from(pem.contents)
}

#[derive(serde::Deserialize)]
struct RnxConfig {
    version: String,
    nodes: std::collections::BTreeMap<String, RnxNode>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RnxNode {
    address: String,
    #[serde(rename = "isDefault")]
    is_default: bool,
    #[serde(rename = "nodeId")]
    node_id: Option<String>,
    cert: String,
    key: String,
    ca: String,
}

fn rnx(path: &Path) -> RnxNode {
    let cfg: RnxConfig = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cfg.version, "3.0");
    let names: Vec<_> = cfg.nodes.keys().cloned().collect();
    assert_eq!(names, ["default"], "the SDK reads the node named default");
    cfg.nodes.into_values().next().unwrap()
}

struct Verifiers {
    server: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    client: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

fn verifiers(ca_pem: &str) -> Verifiers {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Verifiers {
        server: rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .unwrap(),
        client: rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap(),
    }
}

/// (OUs, CA flag, serverAuth, clientAuth, SANs as text) of a certificate.
fn inspect(cert: &CertificateDer<'_>) -> (Vec<String>, bool, bool, bool, Vec<String>) {
    let (_, x) = X509Certificate::from_der(cert.as_ref()).unwrap();
    // ECDSA P-256 with SHA-256, as promised.
    assert_eq!(
        x.signature_algorithm.algorithm,
        oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );
    let spki = x.public_key();
    assert_eq!(
        spki.algorithm.algorithm,
        oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    assert_eq!(
        spki.algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        oid_registry::OID_EC_P256
    );
    let ous = x
        .subject()
        .iter_organizational_unit()
        .map(|ou| ou.as_str().unwrap().to_owned())
        .collect();
    let ca = x
        .basic_constraints()
        .unwrap()
        .map(|b| b.value.ca)
        .expect("basicConstraints present");
    let (server_auth, client_auth) = x.extended_key_usage().unwrap().map_or((false, false), |e| {
        (e.value.server_auth, e.value.client_auth)
    });
    let sans = x
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(d) => d.to_string(),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                        _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                    },
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    (ous, ca, server_auth, client_auth, sans)
}

#[test]
fn writes_private_files_whose_certificates_chain_to_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let out = init(&dir, &["--address", "10.20.30.40:6000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let config_dir = dir.join("config");
    let files = [
        "joblet-config.yml",
        "runtime-config.yml",
        "ca-key.pem",
        "rnx-admin.yml",
        "rnx-viewer.yml",
    ];
    for f in files {
        let p = config_dir.join(f);
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600, "{f}");
        assert!(
            stdout.contains(&p.display().to_string()),
            "{f} not listed:\n{stdout}"
        );
    }
    assert_eq!(
        std::fs::metadata(&config_dir).unwrap().mode() & 0o777,
        0o700
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);
    assert!(stdout.contains("sudo joblet --config"), "{stdout}");
    assert!(stdout.contains("rnx --config"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(&config_dir).unwrap().count(),
        files.len(),
        "stray files"
    );

    // The config parses back with nothing to warn about, and holds what was asked for.
    let loaded = joblet_supervisor::config::load(&config_dir.join("joblet-config.yml")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(
        (c.server.address.as_str(), c.server.port),
        ("10.20.30.40", 6000)
    );
    assert_eq!(c.paths.run_dir, dir.join("run"));
    assert_eq!(c.paths.audit_log, dir.join("audit/audit.log"));
    assert_eq!(c.runtime.base_path, dir.join("runtimes"));
    assert!(c.cgroup.base.starts_with("joblet-") && c.cgroup.base.len() == 15);
    assert_eq!((c.job_user.uid, c.job_user.gid), (65534, 65534));
    assert!(
        c.allowed_mounts
            .iter()
            .any(|m| m == Path::new("/etc/alternatives"))
    );
    let ids = joblet_supervisor::identity::Identities::resolve(&c.users, c.job_user)
        .expect("helper ids are usable on this host");
    // Jobs confined by default, with a span this host leaves free; no metrics endpoint, so
    // several development instances can run side by side.
    assert_eq!(
        c.security.userns,
        UserNamespaces {
            enabled: true,
            host_base: config::DEFAULT_USERNS_HOST_BASE,
            range: config::DEFAULT_USERNS_RANGE,
            slots: config::DEFAULT_USERNS_SLOTS,
        }
    );
    assert_eq!(c.security.landlock, Enforcement::BestEffort);
    joblet_supervisor::job_ids::check_host(&c.security.userns, &ids)
        .expect("the default job id span is free on this host");
    assert_eq!(
        c.monitoring.system_interval,
        config::DEFAULT_SYSTEM_INTERVAL
    );
    assert_eq!(
        c.monitoring.job_metrics_interval,
        config::DEFAULT_JOB_METRICS_INTERVAL
    );
    assert_eq!(c.monitoring.metrics_address, None);
    let text = std::fs::read_to_string(config_dir.join("joblet-config.yml")).unwrap();
    assert!(
        text.contains("\n  # bind_address: \"127.0.0.1:9090\"\n"),
        "{text}"
    );

    let v = verifiers(&c.tls.ca_cert_pem);
    let now = UnixTime::now();

    // Server: verifies for every name a client may use, is serverAuth only, CA:FALSE.
    let server = der(&c.tls.server_cert_pem);
    for name in ["joblet", "localhost", "127.0.0.1", "10.20.30.40"] {
        v.server
            .verify_server_cert(&server, &[], &ServerName::try_from(name).unwrap(), &[], now)
            .unwrap_or_else(|e| panic!("server cert for {name}: {e}"));
    }
    assert!(
        v.server
            .verify_server_cert(
                &server,
                &[],
                &ServerName::try_from("other.example").unwrap(),
                &[],
                now
            )
            .is_err()
    );
    assert!(
        v.client.verify_client_cert(&server, &[], now).is_err(),
        "server cert as client"
    );
    let (ous, ca, server_auth, client_auth, sans) = inspect(&server);
    assert_eq!(ous, ["Server"]);
    assert!(!ca && server_auth && !client_auth);
    assert_eq!(sans, ["joblet", "localhost", "127.0.0.1", "10.20.30.40"]);
    assert!(c.tls.server_key_pem.contains("BEGIN PRIVATE KEY"));

    // CA: a CA, and its key is the one in ca-key.pem.
    let ca_der = der(&c.tls.ca_cert_pem);
    let (ous, is_ca, ..) = inspect(&ca_der);
    assert_eq!(ous, ["CA"]);
    assert!(is_ca);
    let ca_key = std::fs::read_to_string(config_dir.join("ca-key.pem")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&ca_key).unwrap();
    let (_, ca_x) = X509Certificate::from_der(ca_der.as_ref()).unwrap();
    assert_eq!(
        ca_key.public_key_raw(),
        ca_x.public_key().subject_public_key.data.as_ref()
    );

    // Clients: one per role, clientAuth only, CA:FALSE, verified by the frontend's verifier;
    // the node named default, pointing at the address, with the CA.
    for (file, role) in [("rnx-admin.yml", "admin"), ("rnx-viewer.yml", "viewer")] {
        let node = rnx(&config_dir.join(file));
        assert_eq!(node.address, "10.20.30.40:6000");
        assert!(node.is_default);
        assert_eq!(node.node_id.as_deref(), Some(c.server.node_id.as_str()));
        assert_eq!(node.ca, c.tls.ca_cert_pem);
        assert!(node.key.contains("BEGIN PRIVATE KEY"));
        let cert = der(&node.cert);
        v.client
            .verify_client_cert(&cert, &[], now)
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        assert!(
            v.server
                .verify_server_cert(
                    &cert,
                    &[],
                    &ServerName::try_from("joblet").unwrap(),
                    &[],
                    now
                )
                .is_err(),
            "{role} cert accepted as a server"
        );
        let (ous, ca, server_auth, client_auth, _) = inspect(&cert);
        assert_eq!(ous, [role]);
        assert!(!ca && client_auth && !server_auth, "{role}");
        let key = rcgen::KeyPair::from_pem(&node.key).unwrap();
        let (_, x) = X509Certificate::from_der(cert.as_ref()).unwrap();
        assert_eq!(
            key.public_key_raw(),
            x.public_key().subject_public_key.data.as_ref()
        );
    }

    let runtime = std::fs::read_to_string(config_dir.join("runtime-config.yml")).unwrap();
    assert!(runtime.contains(&dir.join("runtimes").display().to_string()));
}

#[test]
fn never_overwrites_without_force_and_replaces_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(init(dir, &[]).status.success());
    let config = dir.join("config/joblet-config.yml");
    let before = std::fs::read_to_string(&config).unwrap();

    let out = init(dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--force") && err.contains("joblet-config.yml"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    // One existing file is enough to refuse, and nothing else is written.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("config")).unwrap();
    std::fs::write(other.join("config/rnx-viewer.yml"), "mine").unwrap();
    assert!(!init(&other, &[]).status.success());
    assert_eq!(std::fs::read_dir(other.join("config")).unwrap().count(), 1);

    let out = init(dir, &["--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(&config).unwrap();
    assert_ne!(after, before, "new certificates");
    assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_dir(dir.join("config")).unwrap().count(),
        5,
        "no temp files left"
    );
}

#[test]
fn the_default_address_is_loopback_and_wildcards_give_loopback_clients() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(init(tmp.path(), &[]).status.success());
    let node = rnx(&tmp.path().join("config/rnx-admin.yml"));
    assert_eq!(node.address, "127.0.0.1:50051");

    let wild = tmp.path().join("wild");
    assert!(init(&wild, &["--address", "0.0.0.0:7000"]).status.success());
    let node = rnx(&wild.join("config/rnx-admin.yml"));
    assert_eq!(node.address, "127.0.0.1:7000");
    let (.., sans) = inspect(&der(&joblet_supervisor::config::load(
        &wild.join("config/joblet-config.yml"),
    )
    .unwrap()
    .config
    .tls
    .server_cert_pem));
    assert!(!sans.contains(&"0.0.0.0".to_string()), "{sans:?}");

    for bad in ["nonsense", "host:0", "1.2.3.4:99999"] {
        let out = init(&tmp.path().join("bad"), &["--address", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"),
            "{bad}"
        );
    }
}
