//! Who is calling: the identity read from a client certificate that rustls has already
//! verified against our CA.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::rbac::Role;

/// Longest CN or OU value kept; longer values are cut so a log line stays bounded.
const MAX_NAME_LEN: usize = 256;

/// The verified client of one TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub addr: SocketAddr,
    /// Subject common name (empty when the certificate has none).
    pub cn: String,
    /// Serial number as colon-separated hex, as `openssl x509 -serial` prints it (without
    /// the colons there).
    pub serial: String,
    /// Every Subject OU value, in certificate order.
    pub ous: Vec<String>,
    /// The first recognised role among `ous`.
    pub role: Option<Role>,
}

/// The connection info tonic puts in every request's extensions.
#[derive(Debug, Clone)]
pub struct Peer(pub Arc<PeerIdentity>);

impl std::ops::Deref for Peer {
    type Target = PeerIdentity;
    fn deref(&self) -> &PeerIdentity {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the client sent no certificate")]
    NoCertificate,
    #[error("the client certificate cannot be parsed: {0}")]
    Unparsable(String),
}

impl PeerIdentity {
    /// Reads the identity from the end-entity certificate (DER) of a verified chain.
    pub fn from_certificate(addr: SocketAddr, der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .find_map(|a| a.as_str().ok())
            .map(bounded)
            .unwrap_or_default();
        let ous: Vec<String> = subject
            .iter_organizational_unit()
            .filter_map(|a| a.as_str().ok())
            .map(bounded)
            .collect();
        let role = Role::from_ous(ous.iter().map(String::as_str));
        Ok(PeerIdentity {
            addr,
            cn,
            serial: cert.raw_serial_as_string(),
            ous,
            role,
        })
    }
}

fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};

    fn cert_with(ous: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        // rcgen keeps one value per attribute type; a second OU goes in as a custom type
        // with the OU's own OID (2.5.4.11), after the first.
        assert!(ous.len() <= 2, "rcgen can encode at most two OUs this way");
        for (i, ou) in ous.iter().enumerate() {
            let ty = if i == 0 {
                DnType::OrganizationalUnitName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 11])
            };
            dn.push(ty, *ou);
        }
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn reads_cn_serial_and_role() {
        let der = cert_with(&["Admin"], Some("admin-client"));
        let id = PeerIdentity::from_certificate(addr(), &der).unwrap();
        assert_eq!(id.cn, "admin-client");
        assert_eq!(id.serial, "01:ab:cd");
        assert_eq!(id.ous, vec!["Admin".to_owned()]);
        assert_eq!(id.role, Some(Role::Admin));
    }

    #[test]
    fn first_recognised_ou_wins() {
        let der = cert_with(&["engineering", "reader"], None);
        let id = PeerIdentity::from_certificate(addr(), &der).unwrap();
        assert_eq!(id.ous, vec!["engineering".to_owned(), "reader".to_owned()]);
        assert_eq!(id.role, Some(Role::Viewer));
        assert_eq!(id.cn, "");
        let der = cert_with(&["viewer", "admin"], None);
        let id = PeerIdentity::from_certificate(addr(), &der).unwrap();
        assert_eq!(id.role, Some(Role::Viewer));
    }

    #[test]
    fn missing_or_unknown_ou_has_no_role() {
        let id = PeerIdentity::from_certificate(addr(), &cert_with(&[], Some("x"))).unwrap();
        assert_eq!(id.role, None);
        let id =
            PeerIdentity::from_certificate(addr(), &cert_with(&["developer"], Some("x"))).unwrap();
        assert_eq!(id.role, None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            PeerIdentity::from_certificate(addr(), b"not a certificate"),
            Err(IdentityError::Unparsable(_))
        ));
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let s = "é".repeat(200);
        let b = bounded(&s);
        assert!(b.len() <= MAX_NAME_LEN);
        assert!(s.starts_with(&b));
    }
}
