//! Test certificates for the TLS side-by-side run: a CA, and one leaf per key type (ECDSA
//! P-256, RSA 2048) for `localhost` and `127.0.0.1`, written as each proxy wants them:
//! `KIND.crt` (the chain, leaf first) and `KIND.key` for tidegate and NGINX, `KIND.pem` (chain
//! and key in one file) for HAProxy's `crt`, and `ca.pem` for the client. Benchmarks only.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

/// The key types of the run, by file name.
pub const KINDS: [&str; 2] = ["ecdsa", "rsa"];

/// Writes the CA and a leaf of each kind into `dir` (created if missing).
pub fn write(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tidegate bench CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for kind in KINDS {
        let key = match kind {
            "rsa" => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?,
            _ => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        };
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let cert = leaf.signed_by(&key, &ca)?;
        let chain = format!("{}{}", cert.pem(), ca.pem());
        std::fs::write(dir.join(format!("{kind}.crt")), &chain)?;
        std::fs::write(dir.join(format!("{kind}.key")), key.serialize_pem())?;
        std::fs::write(
            dir.join(format!("{kind}.pem")),
            chain + &key.serialize_pem(),
        )?;
    }
    Ok(())
}
