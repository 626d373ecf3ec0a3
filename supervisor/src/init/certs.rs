//! The development PKI `joblet init` writes: a CA, a server certificate, and one client
//! certificate per role. ECDSA P-256 throughout; every leaf is `CA:FALSE` with the one
//! extended key usage it needs, and names what Joblet's clients check.

use std::io::Read;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// The DNS name Joblet's own clients (rnx, the SDK) verify the server certificate against.
pub const SERVER_NAME: &str = "joblet";

const CA_DAYS: i64 = 10 * 365;
const LEAF_DAYS: i64 = 825;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating {what} failed: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("reading random bytes for serial numbers failed: {0}")]
    Random(std::io::Error),
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: Pem,
    pub server: Pem,
    pub admin: Pem,
    pub viewer: Pem,
}

/// Generates the whole set; `host` (an IP or a DNS name) is added to the server's names
/// unless it is an unspecified address such as `0.0.0.0`.
pub fn generate(host: &str) -> Result<Pki, CertError> {
    let now = OffsetDateTime::now_utc();
    let err = |what| move |source| CertError::Generate { what, source };

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("the CA key"))?;
    let mut ca = params("Joblet CA", "CA", now, CA_DAYS)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err("the CA certificate"))?;
    let ca_pem = Pem {
        cert: ca_cert.pem(),
        key: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca, ca_key);

    let mut server = params("joblet-server", "Server", now, LEAF_DAYS)?;
    server.subject_alt_names = server_names(host)?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = leaf(server, &issuer, "the server certificate")?;

    let client = |role: &'static str| -> Result<Pem, CertError> {
        let mut p = params(&format!("{role}-client"), role, now, LEAF_DAYS)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf(p, &issuer, "a client certificate")
    };
    Ok(Pki {
        ca: ca_pem,
        server,
        admin: client("admin")?,
        viewer: client("viewer")?,
    })
}

fn params(
    common_name: &str,
    unit: &str,
    now: OffsetDateTime,
    days: i64,
) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Joblet");
    dn.push(DnType::OrganizationalUnitName, unit);
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    // An hour of slack for clocks slightly behind ours.
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    p.serial_number = Some(random_serial()?);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn leaf(
    mut p: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    what: &'static str,
) -> Result<Pem, CertError> {
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| CertError::Generate { what, source })?;
    let cert = p
        .signed_by(&key, issuer)
        .map_err(|source| CertError::Generate { what, source })?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// `host`, `localhost`, `127.0.0.1` and `joblet`, without duplicates.
fn server_names(host: &str) -> Result<Vec<SanType>, CertError> {
    let dns = |name: &str| {
        name.try_into()
            .map(SanType::DnsName)
            .map_err(|source| CertError::Generate {
                what: "the server's names",
                source,
            })
    };
    let mut names = vec![
        dns(SERVER_NAME)?,
        dns("localhost")?,
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
    ];
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let extra = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => None,
        Ok(ip) => Some(SanType::IpAddress(ip)),
        Err(_) => Some(dns(host)?),
    };
    if let Some(extra) = extra
        && !names.contains(&extra)
    {
        names.push(extra);
    }
    Ok(names)
}

/// 16 random bytes, high bit clear so the DER integer stays positive.
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(CertError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_address_and_what_clients_check() {
        let names = |host| {
            server_names(host)
                .unwrap()
                .into_iter()
                .map(|n| match n {
                    SanType::DnsName(d) => d.to_string(),
                    SanType::IpAddress(ip) => ip.to_string(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names("127.0.0.1"), ["joblet", "localhost", "127.0.0.1"]);
        assert_eq!(names("0.0.0.0"), ["joblet", "localhost", "127.0.0.1"]);
        assert_eq!(
            names("10.1.2.3"),
            ["joblet", "localhost", "127.0.0.1", "10.1.2.3"]
        );
        assert_eq!(names("[::1]"), ["joblet", "localhost", "127.0.0.1", "::1"]);
        assert_eq!(
            names("build-1.example"),
            ["joblet", "localhost", "127.0.0.1", "build-1.example"]
        );
    }
}
