//! Config reload without dropping connections: the config file is watched, and a new version is
//! parsed, validated and swapped in whole (`ArcSwap`). Connections keep the snapshot they started
//! with; new connections use the new one.
//!
//! The watch polls once a second for a change of the file's content fingerprint (size, mtime and
//! the resolved path; its first poll, when it starts, always reads the file), which also catches
//! a Kubernetes ConfigMap update: the kubelet swaps the `..data` symlink, so the path resolves to
//! a new file. An invalid file keeps the old snapshot, is logged with the parser's message and
//! counted as `tidegate_config_reloads_total{result="error"}`. Settings that cannot change in a
//! running process (listen addresses, threads, the backend source, the scaler's presence, the
//! peers section but for its `static` list) keep their old values and are reported as needing
//! a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, Registry};
use tracing::{info, warn};

use crate::config::{self, Config, Peers};
use crate::dataplane::Proxy;
use crate::discovery::{self, Catalog};

const POLL: Duration = Duration::from_secs(1);

/// Reads the config again (the file with any command-line overrides applied).
pub type Loader = Box<dyn Fn() -> Result<Config, config::Error> + Send + Sync>;

/// Watches one config file and swaps the data plane's snapshot when it changes.
pub struct Watch {
    path: PathBuf,
    load: Loader,
    proxy: Arc<Proxy>,
    catalog: Arc<Catalog>,
    reloads: IntCounterVec,
}

impl Watch {
    /// A watch on `path`; `load` re-reads it. The new snapshot goes to `proxy`, new caps and
    /// static backends to `catalog`. Registers `tidegate_config_reloads_total` in `registry`.
    pub fn new(
        path: PathBuf,
        load: Loader,
        proxy: Arc<Proxy>,
        catalog: Arc<Catalog>,
        registry: &Registry,
    ) -> Result<Self, crate::metrics::Error> {
        let reloads = crate::metrics::counter_vec(
            registry,
            "tidegate_config_reloads_total",
            "Config reloads by result (ok, error, restart_needed).",
            &["result"],
        )?;
        Ok(Self {
            path,
            load,
            proxy,
            catalog,
            reloads,
        })
    }

    /// Reloads now: parse, validate, keep what cannot change live, swap. Returns the result label.
    pub fn reload(&self) -> &'static str {
        let next = match (self.load)() {
            Ok(c) => c,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "config reload failed; keeping the running config");
                self.reloads.with_label_values(&["error"]).inc();
                return "error";
            }
        };
        let current = self.proxy.config.load_full();
        let (next, frozen) = keep_frozen(&current, next);
        if next == *current && frozen.is_empty() {
            return "unchanged";
        }
        self.apply(&next);
        self.proxy.config.store(Arc::new(next));
        self.reloads.with_label_values(&["ok"]).inc();
        if frozen.is_empty() {
            info!(path = %self.path.display(), "config reloaded");
            "ok"
        } else {
            warn!(path = %self.path.display(), fields = ?frozen, "config reloaded; these fields need a restart to change");
            self.reloads.with_label_values(&["restart_needed"]).inc();
            "restart_needed"
        }
    }

    /// Applies what lives outside the snapshot: backend caps and static backends.
    fn apply(&self, next: &Config) {
        self.catalog.set_capacity(next.max_connections_per_backend);
        if next.backends.is_static() {
            self.catalog.replace(discovery::fixed::endpoints(next));
        }
    }

    fn fingerprint(&self) -> Option<(PathBuf, u64, SystemTime)> {
        let resolved = std::fs::canonicalize(&self.path).ok()?;
        let meta = std::fs::metadata(&resolved).ok()?;
        Some((resolved, meta.len(), meta.modified().ok()?))
    }
}

/// Returns `next` with the fields that cannot change live reset to `current`'s, and their names.
fn keep_frozen(current: &Config, mut next: Config) -> (Config, Vec<&'static str>) {
    let mut frozen = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if next.$($field).+ != current.$($field).+ {
                frozen.push($name);
                next.$($field).+ = current.$($field).+.clone();
            }
        };
    }
    keep!(listen, "listen");
    keep!(admin_listen, "admin_listen");
    keep!(threads, "threads");
    keep!(log_format, "log_format");
    keep!(backends.local, "backends.local");
    keep!(backends.kubernetes, "backends.kubernetes");
    keep!(scaler, "scaler");
    keep!(leader_election, "leader_election");
    keep!(kube_client, "kube_client");
    keep!(backends.from_peers, "backends.from_peers");
    // The static peer list changes live (the peers service reads it every sync); the rest of
    // the section, and whether there is one, needs a restart.
    let rest = |p: &Option<Peers>| {
        p.clone().map(|p| Peers {
            static_: Vec::new(),
            ..p
        })
    };
    if rest(&next.peers) != rest(&current.peers) {
        frozen.push("peers");
        let contacts = next.peers.as_ref().map(|p| p.static_.clone());
        next.peers = current.peers.clone();
        if let (Some(p), Some(contacts)) = (next.peers.as_mut(), contacts) {
            p.static_ = contacts;
        }
    }
    // The certificates themselves rotate on their own (crate::tls::rotation); which files and
    // hosts are served is fixed at start.
    keep!(tls, "tls");
    (next, frozen)
}

#[async_trait]
impl BackgroundService for Watch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Nothing seen yet: the first tick (at once) reads the file and compares its config with
        // the running one, so a change made between the process's read and this service's start
        // is applied, not taken for the version running ("unchanged" is not counted).
        let mut seen = None;
        let mut ticks = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = self.fingerprint();
            if now.is_some() && now != seen {
                seen = now;
                self.reload();
            }
        }
    }
}
