//! Certificate rotation without drops: the files of every pair are read once a second and
//! compared by content with what was last seen. A changed pair is loaded and checked like at
//! start-up; if it is whole and right, the store's selection is swapped and new handshakes get
//! it, while open connections keep the keys they agreed on (rustls never looks again after the
//! handshake). A pair that is unreadable, broken or mismatched keeps the one in force, is
//! logged with the reason and counted once per change of the files.
//!
//! Reading contents rather than metadata catches every way a file changes — a Secret volume's
//! `..data` symlink swap, a rename over it, a rewrite in place within the same second — and the
//! files are a few kilobytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::crypto::CryptoProvider;
use tracing::{info, warn};

use super::metrics::Metrics;
use super::pair::{Files, Pair};
use super::store::{Selection, Store};
use super::{provider, sources};
use crate::config::TlsSection;

/// How often the files are read.
const POLL: Duration = Duration::from_secs(1);

/// What was last seen of one pair's files.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// Their contents' fingerprint.
    Files(u64),
    /// They could not be read, for this reason.
    Unreadable(String),
}

/// The pair in force and what its files looked like last time.
struct Slot {
    pair: Pair,
    seen: Seen,
}

/// Watches the certificate files of one `tls:` section and swaps changed pairs into a store.
pub struct Rotation {
    section: TlsSection,
    store: Arc<Store>,
    provider: Arc<CryptoProvider>,
    slots: Mutex<Vec<Slot>>,
    metrics: Metrics,
}

/// What one look at the files did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Pairs swapped in.
    pub reloaded: usize,
    /// Changed pairs refused (the old one stays).
    pub refused: usize,
}

impl Rotation {
    /// A rotation over `pairs` (as loaded at start, in the order of `section.pairs()`).
    pub fn new(section: TlsSection, store: Arc<Store>, pairs: Vec<Pair>, metrics: Metrics) -> Self {
        let slots = pairs
            .into_iter()
            .map(|pair| Slot {
                seen: Seen::Files(pair.fingerprint),
                pair,
            })
            .collect();
        Self {
            section,
            store,
            provider: provider(),
            slots: Mutex::new(slots),
            metrics,
        }
    }

    /// Reads every pair's files once and swaps in the ones that changed and check out.
    pub fn check(&self) -> Checked {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut checked = Checked::default();
        for (slot, (name, source)) in slots.iter_mut().zip(sources(&self.section)) {
            let files = Files::read(source.cert, source.key);
            let seen = match &files {
                Ok(f) => Seen::Files(f.fingerprint()),
                Err(e) => Seen::Unreadable(e.to_string()),
            };
            if seen == slot.seen {
                continue;
            }
            slot.seen = seen;
            let loaded = files.and_then(|f| {
                if f.fingerprint() == slot.pair.fingerprint {
                    return Ok(None); // back to the pair in force (after a failed read)
                }
                source.check(&f, &self.provider).map(Some)
            });
            match loaded {
                Ok(None) => {}
                Ok(Some(pair)) => {
                    info!(certificate = name, file = %source.cert.display(), "certificate reloaded; new handshakes use it");
                    self.metrics.set_expiry(name, pair.not_after);
                    self.metrics.reloads.with_label_values(&["ok"]).inc();
                    slot.pair = pair;
                    checked.reloaded += 1;
                }
                Err(e) => {
                    warn!(certificate = name, error = %e, reason = e.metric_label(), "certificate reload refused; keeping the one in force");
                    self.metrics.reloads.with_label_values(&["error"]).inc();
                    checked.refused += 1;
                }
            }
        }
        if checked.reloaded > 0 {
            let keys: Vec<_> = slots
                .iter()
                .map(|s| Arc::clone(&s.pair.certified))
                .collect();
            if let Some(selection) = Selection::new(&self.section, &keys) {
                self.store.replace(selection);
            }
        }
        checked
    }
}

#[async_trait]
impl BackgroundService for Rotation {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            self.check();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prometheus::Registry;

    use super::*;

    /// A directory laid out as the kubelet lays out a Secret volume: `tls.crt` and `tls.key`
    /// are symlinks into `..data`, itself a symlink to a timestamped directory swapped whole.
    struct SecretVolume {
        dir: tempfile::TempDir,
        version: usize,
    }

    impl SecretVolume {
        fn new(cert: &str, key: &str) -> Self {
            let mut v = Self {
                dir: tempfile::tempdir().unwrap(),
                version: 0,
            };
            v.swap(cert, key);
            for name in ["tls.crt", "tls.key"] {
                let link = v.dir.path().join(name);
                std::os::unix::fs::symlink(Path::new("..data").join(name), link).unwrap();
            }
            v
        }

        fn swap(&mut self, cert: &str, key: &str) {
            self.version += 1;
            let data = self.dir.path().join(format!("..2026_{}", self.version));
            std::fs::create_dir(&data).unwrap();
            std::fs::write(data.join("tls.crt"), cert).unwrap();
            std::fs::write(data.join("tls.key"), key).unwrap();
            let tmp = self.dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
            std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        }

        fn section(&self) -> TlsSection {
            TlsSection {
                cert_file: self.dir.path().join("tls.crt"),
                key_file: self.dir.path().join("tls.key"),
                certificates: Vec::new(),
                listen: None,
            }
        }
    }

    fn generated(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_secret_swap_rotates_and_a_bad_pair_keeps_the_old_one() {
        let (cert1, key1) = generated("one.test");
        let mut volume = SecretVolume::new(&cert1, &key1);
        let section = volume.section();
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let pairs = super::super::load(&section).unwrap();
        let keys: Vec<_> = pairs.iter().map(|p| Arc::clone(&p.certified)).collect();
        let store = Arc::new(Store::new(Selection::new(&section, &keys).unwrap()));
        let rotation = Rotation::new(section, Arc::clone(&store), pairs, metrics.clone());
        let served = || store.select(None).cert[0].clone();
        let first = served();

        assert_eq!(rotation.check(), Checked::default(), "nothing changed");

        let (cert2, key2) = generated("two.test");
        volume.swap(&cert2, &key2);
        assert_eq!(
            rotation.check(),
            Checked {
                reloaded: 1,
                refused: 0
            }
        );
        let second = served();
        assert_ne!(first, second);
        assert_eq!(rotation.check(), Checked::default(), "counted once");

        // A new certificate with the old key: refused, the second pair stays.
        let (cert3, _) = generated("three.test");
        volume.swap(&cert3, &key2);
        assert_eq!(
            rotation.check(),
            Checked {
                reloaded: 0,
                refused: 1
            }
        );
        assert_eq!(served(), second);
        assert_eq!(
            rotation.check(),
            Checked::default(),
            "refused once per change"
        );
        let count = |result| metrics.reloads.with_label_values(&[result]).get();
        assert_eq!((count("ok"), count("error")), (1, 1));

        // Unreadable, then back to the pair in force: no reload, one more error.
        std::fs::remove_file(volume.dir.path().join("..data")).unwrap();
        assert_eq!(
            rotation.check(),
            Checked {
                reloaded: 0,
                refused: 1
            }
        );
        volume.swap(&cert2, &key2);
        assert_eq!(rotation.check(), Checked::default());
        assert_eq!(served(), second);
    }
}
