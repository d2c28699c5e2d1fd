//! One certificate and its key, loaded from their PEM files and checked: the chain parses, the
//! key parses, the key is the certificate's, and the certificate covers the host names it is
//! configured for. Start-up, `check-config` and every rotation load pairs through here, so a
//! pair is either whole and right or refused with the file and the reason.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::expiry;

/// Why a pair could not be used. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (missing, unreadable).
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM `CERTIFICATE`, or a broken one.
    #[error("{path}: no valid PEM certificate: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key file holds no PEM private key, or a broken one.
    #[error("{path}: no valid PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{key}: this key does not belong to the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate does not name a host it is configured for.
    #[error("{path}: the certificate does not cover {host} (it names: {names})")]
    Uncovered {
        /// The certificate file.
        path: PathBuf,
        /// The configured host.
        host: String,
        /// The DNS names in the certificate.
        names: String,
    },
}

impl Error {
    /// A bounded label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read_error",
            Self::Certificate { .. } => "bad_certificate",
            Self::Key { .. } => "bad_key",
            Self::Mismatch { .. } => "key_mismatch",
            Self::Uncovered { .. } => "host_not_covered",
        }
    }
}

/// The two files' contents, read together; what a rotation compares.
pub struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Files {
    /// Reads both files.
    pub fn read(cert: &Path, key: &Path) -> Result<Self, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Self {
            cert: read(cert)?,
            key: read(key)?,
        })
    }

    /// A hash of both contents: equal for the same bytes, whatever the mtime or the symlinks
    /// (a Secret volume's `..data` swap changes both; a `touch` changes neither).
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cert.hash(&mut h);
        self.key.hash(&mut h);
        h.finish()
    }
}

/// A checked pair, ready to serve.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The chain and the signing key, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// The leaf's `notAfter`, if it could be read.
    pub not_after: Option<SystemTime>,
    /// Of the files it was loaded from.
    pub fingerprint: u64,
}

/// Where a pair comes from and what it must cover.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The PEM chain.
    pub cert: &'a Path,
    /// The PEM key.
    pub key: &'a Path,
    /// Host names the certificate must cover (none for the default).
    pub hosts: &'a [String],
}

impl Source<'_> {
    /// Reads and checks the pair.
    pub fn load(&self, provider: &CryptoProvider) -> Result<Pair, Error> {
        self.check(&Files::read(self.cert, self.key)?, provider)
    }

    /// Checks a pair from contents already read.
    pub fn check(&self, files: &Files, provider: &CryptoProvider) -> Result<Pair, Error> {
        let chain = self.chain(&files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| Error::Key {
            path: self.key.to_owned(),
            reason: e.to_string(),
        })?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| Error::Key {
                path: self.key.to_owned(),
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, signing);
        // Every key type of ring and aws-lc-rs can say its public key: an unknown answer is
        // refused rather than taken on trust.
        if certified.keys_match().is_err() {
            return Err(Error::Mismatch {
                cert: self.cert.to_owned(),
                key: self.key.to_owned(),
            });
        }
        let leaf = &certified.cert[0];
        self.covers(leaf)?;
        Ok(Pair {
            not_after: expiry::not_after(leaf),
            certified: Arc::new(certified),
            fingerprint: files.fingerprint(),
        })
    }

    fn chain(&self, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
        let bad = |reason: String| Error::Certificate {
            path: self.cert.to_owned(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let Some(leaf) = chain.first() else {
            return Err(bad("the file holds no CERTIFICATE block".into()));
        };
        webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| bad(format!("the first certificate does not parse: {e}")))?;
        Ok(chain)
    }

    /// Every configured host is named by the leaf (exactly, or by a wildcard of one label).
    fn covers(&self, leaf: &CertificateDer<'_>) -> Result<(), Error> {
        if self.hosts.is_empty() {
            return Ok(());
        }
        let parsed = webpki::EndEntityCert::try_from(leaf).map_err(|e| Error::Certificate {
            path: self.cert.to_owned(),
            reason: e.to_string(),
        })?;
        let names: Vec<String> = parsed
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect();
        for host in self.hosts {
            let host_lower = host.to_ascii_lowercase();
            if !names.iter().any(|n| name_covers(n, &host_lower)) {
                return Err(Error::Uncovered {
                    path: self.cert.to_owned(),
                    host: host.clone(),
                    names: names.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Whether a certificate's DNS name `name` covers the configured host `host` (both lowercase):
/// the same name, or `*.d` for a host of one more label under `d` (or the wildcard itself).
fn name_covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(domain), Some((label, rest))) => rest == domain && !label.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_pair_is_checked_and_every_fault_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let cert = write(dir.path(), "a.crt", &a.cert.pem());
        let key = write(dir.path(), "a.key", &a.signing_key.serialize_pem());
        let other_key = write(dir.path(), "b.key", &b.signing_key.serialize_pem());
        let junk = write(dir.path(), "junk.pem", "not pem at all\n");
        let provider = super::super::provider();
        let hosts = ["a.test".to_owned()];
        fn source<'a>(cert: &'a Path, key: &'a Path, hosts: &'a [String]) -> Source<'a> {
            Source { cert, key, hosts }
        }

        let pair = source(&cert, &key, &hosts).load(&provider).unwrap();
        assert!(pair.not_after.is_some());
        assert_eq!(pair.certified.cert.len(), 1);

        let err = |s: Source<'_>| s.load(&provider).unwrap_err();
        let e = err(source(&cert, &other_key, &hosts));
        assert_eq!(e.metric_label(), "key_mismatch");
        assert!(
            e.to_string().contains("b.key") && e.to_string().contains("a.crt"),
            "{e}"
        );
        let e = err(source(&dir.path().join("missing.crt"), &key, &hosts));
        assert_eq!(e.metric_label(), "read_error");
        assert!(e.to_string().contains("missing.crt"), "{e}");
        let e = err(source(&junk, &key, &hosts));
        assert_eq!(e.metric_label(), "bad_certificate");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let e = err(source(&cert, &junk, &hosts));
        assert_eq!(e.metric_label(), "bad_key");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let others = ["b.test".to_owned()];
        let e = err(Source {
            cert: &cert,
            key: &key,
            hosts: &others,
        });
        assert_eq!(e.metric_label(), "host_not_covered");
        assert!(
            e.to_string().contains("b.test") && e.to_string().contains("a.test"),
            "{e}"
        );
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("a.example", "a.example"));
        assert!(name_covers("*.example", "a.example"));
        assert!(name_covers("*.example", "*.example"));
        assert!(!name_covers("*.example", "a.b.example"));
        assert!(!name_covers("*.example", "example"));
        assert!(!name_covers("a.example", "*.example"));
    }
}
