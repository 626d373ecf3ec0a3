//! Mutual TLS and roles (issue 2, case 4): no certificate, a certificate from another CA
//! and an unknown OU are refused; a viewer reads but cannot run; every refusal is audited.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use joblet_tests::{System, host, require_root};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
};

#[test]
fn clients_are_refused_unless_their_certificate_and_role_allow() {
    require_root!();
    let sys = System::start();
    let cfg = std::fs::read_to_string(&sys.admin).expect("admin config");
    let ca_pem = host::yaml_string(&cfg, &["nodes", "default", "ca"]).expect("ca in config");

    // No client certificate: the TLS handshake is refused.
    let err = handshake_without_client_cert(&sys.address, &ca_pem);
    assert!(
        err.contains("certificate") || err.contains("alert") || err.contains("closed"),
        "no-cert handshake error: {err}"
    );

    // A client certificate from another CA: refused, and rnx says it is a TLS problem.
    let (rogue_ca, rogue_key) = new_ca("Rogue CA");
    let rogue_issuer = Issuer::new(rogue_ca, rogue_key);
    let rogue = client_config(&sys, &cfg, "admin", &rogue_issuer, "rogue");
    let out = sys.rnx_with(&rogue, &["job", "list"]);
    assert_eq!(out.code, 6, "other CA must be a TLS error:\n{}", out.stderr);

    // Our CA but an unknown OU: the connection works, every call is PERMISSION_DENIED.
    let ca_key = KeyPair::from_pem(
        &std::fs::read_to_string(sys.dir.path().join("config/ca-key.pem")).expect("ca key"),
    )
    .expect("parse ca key");
    let our_issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("our CA");
    let stranger = client_config(&sys, &cfg, "hacker", &our_issuer, "stranger");
    let out = sys.rnx_with(&stranger, &["job", "list"]);
    assert_eq!(out.code, 4, "unknown OU must be denied:\n{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("permission denied"),
        "{}",
        out.stderr
    );

    // A viewer lists and reads logs, but may not run a job.
    let job = sys.run_job(&["echo", "visible-to-viewers"]);
    sys.wait_done(&job, Duration::from_secs(30));
    let list = sys.rnx_with(&sys.viewer, &["--json", "job", "list"]);
    assert!(list.ok(), "viewer list: {}", list.stderr);
    assert!(list.stdout.contains(&job.id));
    let log = sys.rnx_with(&sys.viewer, &["job", "log", &job.id]);
    assert!(
        log.ok() && log.stdout.contains("visible-to-viewers"),
        "{log:?}"
    );
    let run = sys.rnx_with(&sys.viewer, &["job", "run", "true"]);
    assert_eq!(run.code, 4, "viewer RunJob: {}", run.stderr);
    let stop = sys.rnx_with(&sys.viewer, &["job", "delete", &job.id]);
    assert_eq!(stop.code, 4, "viewer DeleteJob: {}", stop.stderr);

    // Every refusal is in the audit log, as JSON lines.
    let audit_path = audit_log(&sys);
    let audit = std::fs::read_to_string(&audit_path).expect("audit log");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect();
    let denied = |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().any(pred);
    let text = |v: &serde_json::Value| v.to_string().to_lowercase();
    assert!(
        denied(&|v| text(v).contains("auth_failed")),
        "no auth_failed line for the TLS refusals:\n{audit}"
    );
    assert!(
        denied(&|v| text(v).contains("stranger") && text(v).contains("denied")),
        "no denied line for the unknown OU:\n{audit}"
    );
    assert!(
        denied(&|v| text(v).contains("runjob")
            && text(v).contains("viewer")
            && text(v).contains("denied")),
        "no denied RunJob line for the viewer:\n{audit}"
    );
    assert!(!audit.contains("BEGIN"), "no key material in the audit log");
    sys.stop();
}

fn audit_log(sys: &System) -> PathBuf {
    let cfg = std::fs::read_to_string(&sys.config).expect("config");
    host::yaml_string(&cfg, &["audit", "path"])
        .map(PathBuf::from)
        .expect("audit.path in config")
}

fn new_ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    (p, key)
}

/// Writes an rnx config whose client certificate (OU `ou`, CN `cn`) is signed by `issuer`,
/// trusting the real server CA.
fn client_config(
    sys: &System,
    admin_cfg: &str,
    ou: &str,
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
) -> PathBuf {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, issuer).expect("sign");
    let ca = host::yaml_string(admin_cfg, &["nodes", "default", "ca"]).expect("ca");
    let yaml = format!(
        "version: \"3.0\"\nnodes:\n  default:\n    address: \"{}\"\n    isDefault: true\n    cert: |\n{}    key: |\n{}    ca: |\n{}",
        sys.address,
        indent(&cert.pem()),
        indent(&key.serialize_pem()),
        indent(&ca)
    );
    let path = sys.dir.path().join(format!("rnx-{cn}.yml"));
    std::fs::write(&path, yaml).expect("write client config");
    host::chmod(&path, 0o600);
    path
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// A TLS 1.3 handshake that trusts our CA but offers no client certificate; returns the
/// error the server's refusal produced.
fn handshake_without_client_cert(address: &str, ca_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("joblet").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
    let mut sock = TcpStream::connect(address).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    // With TLS 1.3 the server's verdict on the client arrives after the client's Finished:
    // send an HTTP/2 preface and read.
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let mut buf = [0u8; 64];
    match tls.read(&mut buf) {
        Ok(0) => "connection closed by the server".into(),
        Ok(n) => panic!("server answered {n} bytes to a client without a certificate"),
        Err(e) => e.to_string().to_lowercase(),
    }
}
