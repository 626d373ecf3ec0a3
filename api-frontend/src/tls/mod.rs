//! TLS: the server configuration (TLS 1.3 only, client certificate required and verified
//! against our CA only, ALPN h2 then http/1.1) and the acceptor that completes each
//! handshake before a connection reaches gRPC.

pub mod acceptor;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("server certificate: {0}")]
    ServerCert(String),
    #[error("server private key: {0}")]
    ServerKey(String),
    #[error("CA certificate: {0}")]
    CaCert(String),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Builds the server's TLS configuration from PEM text.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = certificates(cert_pem).map_err(TlsSetupError::ServerCert)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsSetupError::ServerKey(format!("no usable PEM private key ({e})")))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(ca_pem).map_err(TlsSetupError::CaCert)? {
        roots
            .add(ca)
            .map_err(|e| TlsSetupError::CaCert(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Only our CA: no system roots, and a certificate is required (no anonymous clients).
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::Config(format!("certificate and key do not fit: {e}")))?;
    // h2 for gRPC; http/1.1 for browsers and agents reading the `/v1/` event streams.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No resumption: every connection proves its certificate, so a role or a certificate
    // taken back is never carried by a resumed session. Tickets would also cost every new
    // connection (each `rnx` command) two stored sessions and a second flight of records
    // that a process about to exit never uses.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn self_signed() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn alpn_prefers_h2_and_accepts_http1() {
        let (cert, key) = self_signed();
        let config = server_config(&cert, &key, &cert).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    /// A CA, a server certificate for "joblet" and a client certificate, all signed by it:
    /// (ca, server cert, server key, client cert, client key), in PEM.
    fn ca_signed() -> (String, String, String, String, String) {
        use rcgen::{ExtendedKeyUsagePurpose, IsCa, Issuer};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, usage| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.extended_key_usages = vec![usage];
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (server, server_key) = leaf(vec!["joblet".into()], ExtendedKeyUsagePurpose::ServerAuth);
        let (client, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth);
        (ca_pem, server, server_key, client, client_key)
    }

    /// A client that keeps sessions (rustls' default) connects twice: the second handshake
    /// must be a full one, with the client's certificate checked again.
    #[tokio::test]
    async fn no_connection_resumes_a_session() {
        use rustls::pki_types::ServerName;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ca, server, server_key, client, client_key) = ca_signed();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(server_config(&server, &server_key, &ca).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                tls.write_all(b"x").await.unwrap();
                tls.shutdown().await.unwrap();
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificates(&ca).unwrap().remove(0)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certificates(&client).unwrap(), key)
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("joblet").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            // Any ticket arrives before the byte: reading it stores the session, if any.
            let mut byte = Vec::new();
            tls.read_to_end(&mut byte).await.unwrap();
            assert_eq!(byte, b"x");
            kinds.push(tls.get_ref().1.handshake_kind());
        }
        serve.await.unwrap();
        let full = Some(rustls::HandshakeKind::Full);
        assert_eq!(kinds, [full, full]);
    }

    #[test]
    fn bad_material_is_named() {
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        assert!(matches!(
            server_config("junk", &key, &cert),
            Err(TlsSetupError::ServerCert(_))
        ));
        assert!(matches!(
            server_config(&cert, "junk", &cert),
            Err(TlsSetupError::ServerKey(_))
        ));
        assert!(matches!(
            server_config(&cert, &key, ""),
            Err(TlsSetupError::CaCert(_))
        ));
        assert!(matches!(
            server_config(&cert, &other_key, &cert),
            Err(TlsSetupError::Config(_))
        ));
    }
}
