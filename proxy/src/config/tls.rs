//! `tls:` — TLS termination on the traffic listener: the default certificate, optional
//! certificates chosen by SNI, and an optional second listener so one process serves plain and
//! TLS ports.
//!
//! ```yaml
//! tls:
//!   cert_file: /etc/tidegate/tls/tls.crt     # a kubernetes.io/tls Secret's two keys
//!   key_file: /etc/tidegate/tls/tls.key
//!   certificates:
//!     - hosts: [chat.example.com, "*.chat.example.com"]
//!       cert_file: /etc/tidegate/chat/tls.crt
//!       key_file: /etc/tidegate/chat/tls.key
//!   listen: 0.0.0.0:8443                     # optional; without it `listen` speaks TLS
//! ```
//!
//! Validation here is about the text: paths given, host names well formed, no host twice.
//! Whether the files exist, parse, and hold a key that matches the certificate is checked when
//! they are loaded (`tls::pair`), by start-up, by `check-config` and at each rotation.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Error;

/// Name of the default certificate in metrics and logs.
pub const DEFAULT_CERTIFICATE_NAME: &str = "default";

/// The `tls:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file with the default certificate chain, leaf first (`tls.crt` of a
    /// `kubernetes.io/tls` Secret). Served to clients whose SNI matches no entry of
    /// `certificates`, or that send no SNI. Required.
    pub cert_file: PathBuf,
    /// PEM file with the default certificate's private key (PKCS#8, PKCS#1 or SEC1; `tls.key`
    /// of the Secret). Required.
    pub key_file: PathBuf,
    /// Certificates chosen by the client's SNI. Default: none (every client gets the default).
    #[serde(default)]
    pub certificates: Vec<SniCertificate>,
    /// Address of a second, TLS-only traffic listener; `listen` then stays plain. Default: none
    /// (`listen` itself speaks TLS).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// One entry of `tls.certificates`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// Host names this certificate is served for: exact names (`chat.example.com`) or one
    /// leading wildcard label (`*.example.com`, matching one label). Compared without case.
    /// The certificate must cover each of them. At least one.
    pub hosts: Vec<String>,
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with its private key.
    pub key_file: PathBuf,
    /// Name in metrics (`tidegate_tls_certificate_expiry_timestamp_seconds{name}`) and logs.
    /// Default: the first host.
    #[serde(default)]
    pub name: Option<String>,
}

impl SniCertificate {
    /// The name it is known by in metrics and logs.
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.hosts.first().map(String::as_str))
            .unwrap_or_default()
    }
}

impl TlsSection {
    /// Every certificate with the name it is known by: the default first, then the SNI entries.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &PathBuf, &PathBuf)> {
        let default = (DEFAULT_CERTIFICATE_NAME, &self.cert_file, &self.key_file);
        let sni = self
            .certificates
            .iter()
            .map(|c| (c.name(), &c.cert_file, &c.key_file));
        std::iter::once(default).chain(sni)
    }

    /// The rules that need no file: paths given, hosts well formed and each listed once, names
    /// unique, the TLS listener apart from the others.
    pub(super) fn validate(&self, listen: SocketAddr, admin: SocketAddr) -> Result<(), Error> {
        let invalid =
            |field: &'static str, expected: String| Err(Error::Invalid { field, expected });
        if self.cert_file.as_os_str().is_empty() {
            return invalid("tls.cert_file", "a path to a PEM certificate chain".into());
        }
        if self.key_file.as_os_str().is_empty() {
            return invalid("tls.key_file", "a path to a PEM private key".into());
        }
        if let Some(tls) = self.listen.filter(|a| a.port() != 0)
            && (tls == listen || tls == admin)
        {
            return invalid(
                "tls.listen",
                format!("an address other than listen and admin_listen ({tls} is taken)"),
            );
        }
        let mut hosts = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::from([DEFAULT_CERTIFICATE_NAME.to_owned()]);
        for (i, entry) in self.certificates.iter().enumerate() {
            if entry.hosts.is_empty() {
                return invalid(
                    "tls.certificates[].hosts",
                    format!("at least one host name (entry {i} has none)"),
                );
            }
            for host in &entry.hosts {
                if let Err(why) = check_host(host) {
                    return invalid(
                        "tls.certificates[].hosts",
                        format!("a DNS name or *.name ({host:?} {why})"),
                    );
                }
                if !hosts.insert(host.to_ascii_lowercase()) {
                    return invalid(
                        "tls.certificates[].hosts",
                        format!("each host in one entry only ({host} is listed twice)"),
                    );
                }
            }
            if entry.cert_file.as_os_str().is_empty() || entry.key_file.as_os_str().is_empty() {
                return invalid(
                    "tls.certificates[].cert_file",
                    format!("a cert_file and a key_file for {}", entry.name()),
                );
            }
            if !names.insert(entry.name().to_owned()) {
                return invalid(
                    "tls.certificates[].name",
                    format!("a name used once ({} is taken)", entry.name()),
                );
            }
        }
        Ok(())
    }
}

/// Whether `host` is a DNS name (letters, digits, `-`, labels of 1–63 bytes, 253 in all), with
/// at most one wildcard, as the whole first label. IP addresses are refused: SNI carries names.
fn check_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || host.len() > 253 {
        return Err("is empty or longer than 253 bytes");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; SNI carries only names");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty label or one longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label that starts or ends with '-'");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("may hold only letters, digits, '-' and one leading '*.'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn host_names_are_checked() {
        for good in ["chat.example.com", "*.example.com", "localhost", "a-b.c9"] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in [
            "", "*.", "a..b", "-a.b", "a-.b", "a.*.b", "**.a", "a b", "10.0.0.1", "é.com",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_host(&"a".repeat(64)).is_err());
    }

    #[test]
    fn a_section_parses_and_names_its_pairs() {
        let c = parse(
            "tls:\n  cert_file: /t/tls.crt\n  key_file: /t/tls.key\n  certificates:\n    - {hosts: [a.example, '*.b.example'], cert_file: /a.crt, key_file: /a.key}\n    - {hosts: [c.example], cert_file: /c.crt, key_file: /c.key, name: cee}\n",
            "tls.yaml",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        let names: Vec<&str> = tls.pairs().map(|(n, ..)| n).collect();
        assert_eq!(names, ["default", "a.example", "cee"]);
        assert_eq!(tls.listen, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("tls:\n  cert_file: /a\n", "key_file"),
            (
                "tls: {cert_file: /a, key_file: /b, certificates: [{hosts: [], cert_file: /c, key_file: /d}]}\n",
                "tls.certificates[].hosts",
            ),
            (
                "tls: {cert_file: /a, key_file: /b, certificates: [{hosts: [x.y, X.Y], cert_file: /c, key_file: /d}]}\n",
                "listed twice",
            ),
            (
                "tls: {cert_file: /a, key_file: /b, certificates: [{hosts: ['1.2.3.4'], cert_file: /c, key_file: /d}]}\n",
                "IP address",
            ),
            (
                "tls: {cert_file: /a, key_file: /b, certificates: [{hosts: [x.y], cert_file: /c, key_file: /d, name: default}]}\n",
                "tls.certificates[].name",
            ),
            (
                "listen: 127.0.0.1:8443\ntls: {cert_file: /a, key_file: /b, listen: 127.0.0.1:8443}\n",
                "tls.listen",
            ),
            (
                "tls: {cert_file: /a, key_file: /b, ciphers: all}\n",
                "ciphers",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text, "t.yaml").unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
