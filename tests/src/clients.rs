//! Client configurations a test makes up: a certificate from a CA the server never trusted,
//! or one from the server's CA with a chosen role (OU).

use std::path::PathBuf;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
};

use crate::{System, host};

/// An rnx config whose client certificate (OU `ou`) is signed by a brand-new CA that the
/// server has never seen; it trusts the real server CA, so only the client side is wrong.
pub fn foreign_ca_client(sys: &System, ou: &str, name: &str) -> PathBuf {
    let key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("Foreign CA {name}"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    write_client(sys, ou, name, &Issuer::new(ca, key))
}

/// An rnx config whose client certificate (OU `ou`) is signed by the server's own CA.
pub fn our_ca_client(sys: &System, ou: &str, name: &str) -> PathBuf {
    let ca_pem = server_ca_pem(sys);
    let ca_key = KeyPair::from_pem(
        &std::fs::read_to_string(sys.dir.path().join("config/ca-key.pem")).expect("CA key"),
    )
    .expect("parse the CA key");
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("our CA");
    write_client(sys, ou, name, &issuer)
}

fn server_ca_pem(sys: &System) -> String {
    let admin = std::fs::read_to_string(&sys.admin).expect("admin config");
    host::yaml_string(&admin, &["nodes", "default", "ca"]).expect("ca in the admin config")
}

fn write_client(sys: &System, ou: &str, name: &str, issuer: &Issuer<'_, KeyPair>) -> PathBuf {
    let key = KeyPair::generate().expect("client key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p
        .signed_by(&key, issuer)
        .expect("sign the client certificate");
    let yaml = format!(
        "version: \"3.0\"\nnodes:\n  default:\n    address: \"{}\"\n    isDefault: true\n    cert: |\n{}    key: |\n{}    ca: |\n{}",
        sys.address,
        indent(&cert.pem()),
        indent(&key.serialize_pem()),
        indent(&server_ca_pem(sys))
    );
    let path = sys.dir.path().join(format!("rnx-{name}.yml"));
    std::fs::write(&path, yaml).expect("write the client config");
    host::chmod(&path, 0o600);
    path
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}
