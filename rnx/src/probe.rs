//! Telling "the server refused our client certificate" apart from a plain broken
//! connection.
//!
//! With TLS 1.3 the client finishes its handshake before the server has checked the client
//! certificate; a server that refuses it then sends an alert and closes. Whether the failed
//! call reports that alert or only "broken pipe" depends on which side of the race our
//! request write lands. So, on such a failure, we open one more TLS connection with the
//! same credentials, send nothing, and read: an alert there is the real answer.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::cause::{self, Cause};
use crate::config::Target;
use crate::connect::{CONNECT_TIMEOUT, SERVER_NAME};

/// How long to wait for the server's verdict after the handshake. A server that accepts us
/// either sends its HTTP/2 settings at once or waits for ours; either way no alert comes.
const VERDICT_WAIT: Duration = Duration::from_secs(2);

/// The TLS-level reason the server gives this client, if any.
pub async fn tls_refusal(target: &Target) -> Option<Cause> {
    let config = client_config(target)?;
    let address = target
        .address
        .split_once("://")
        .map_or(target.address.as_str(), |(_, rest)| rest);
    let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .ok()?
        .ok()?;
    let name = ServerName::try_from(SERVER_NAME).ok()?;
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let mut tls = match timeout(CONNECT_TIMEOUT, handshake).await.ok()? {
        Ok(tls) => tls,
        Err(e) => return cause::find(&e).filter(Cause::is_tls),
    };
    let mut buf = [0u8; 512];
    match timeout(VERDICT_WAIT, tls.read(&mut buf)).await {
        Ok(Err(e)) => cause::find(&e).filter(Cause::is_tls),
        _ => None,
    }
}

/// The same trust and identity as the tonic channel: the node's CA only, our certificate.
fn client_config(target: &Target) -> Option<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(target.ca_pem.as_bytes()) {
        roots.add(ca.ok()?).ok()?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(target.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .ok()?;
    let key = PrivateKeyDer::from_pem_slice(target.key_pem.as_bytes()).ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Some(config)
}
