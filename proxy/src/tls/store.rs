//! The certificates in force and how a handshake picks one: rustls asks the [`Store`] (its
//! `ResolvesServerCert`) during each ClientHello, and the store answers from an immutable
//! [`Selection`] swapped whole by a rotation. A handshake that has started keeps the key it was
//! given; the next one sees the new selection. Open connections never look again.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsSection;

/// Which certificate each SNI name gets.
#[derive(Debug)]
pub struct Selection {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` entries, keyed by `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Selection {
    /// The selection for `section`: `keys[0]` is the default, `keys[i + 1]` the key of
    /// `section.certificates[i]`.
    pub fn new(section: &TlsSection, keys: &[Arc<CertifiedKey>]) -> Option<Self> {
        let (default, sni) = keys.split_first()?;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (entry, key) in section.certificates.iter().zip(sni) {
            for host in &entry.hosts {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(domain) => wildcard.insert(domain.to_owned(), Arc::clone(key)),
                    None => exact.insert(host, Arc::clone(key)),
                };
            }
        }
        Some(Self {
            default: Arc::clone(default),
            exact,
            wildcard,
        })
    }

    /// The key for a ClientHello's SNI: an exact name first, then a one-label wildcard, else
    /// the default (also for a client that sent no SNI).
    pub fn select(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni else {
            return &self.default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.exact
            .get(name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
            .unwrap_or(&self.default)
    }
}

/// rustls's certificate resolver over the selection in force.
#[derive(Debug)]
pub struct Store {
    selection: ArcSwap<Selection>,
}

impl Store {
    /// A store serving `selection`.
    pub fn new(selection: Selection) -> Self {
        Self {
            selection: ArcSwap::from_pointee(selection),
        }
    }

    /// Serves `selection` to every handshake from now on.
    pub fn replace(&self, selection: Selection) {
        self.selection.store(Arc::new(selection));
    }

    /// The key a ClientHello with `sni` would get now.
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        Arc::clone(self.selection.load().select(sni))
    }
}

impl ResolvesServerCert for Store {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SniCertificate;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let pair = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(pair.signing_key.serialize_der().into());
        let provider = super::super::provider();
        let signing = provider.key_provider.load_private_key(der).unwrap();
        Arc::new(CertifiedKey::new(vec![pair.cert.der().clone()], signing))
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let entry = |hosts: &[&str]| SniCertificate {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            cert_file: "c".into(),
            key_file: "k".into(),
            name: None,
        };
        let section = TlsSection {
            cert_file: "d".into(),
            key_file: "d".into(),
            certificates: vec![entry(&["a.test", "*.w.test"]), entry(&["x.w.test"])],
            listen: None,
        };
        let keys = [key("default"), key("a"), key("x")];
        let s = Selection::new(&section, &keys).unwrap();
        let is = |sni, want: usize| assert!(Arc::ptr_eq(s.select(sni), &keys[want]), "{sni:?}");
        is(None, 0);
        is(Some("other.test"), 0);
        is(Some("a.test"), 1);
        is(Some("A.Test"), 1);
        is(Some("y.w.test"), 1);
        is(Some("x.w.test"), 2);
        is(Some("z.y.w.test"), 0);
        is(Some("w.test"), 0);
    }
}
