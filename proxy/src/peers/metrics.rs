//! The exchange's metrics. The per-backend cluster gauges are read from the table at scrape
//! time, like the data plane's; the rest is updated by the sync loop and the receiver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use tidegate_common::BackendTable;
use tidegate_common::share::node::{Counters, Received};

use crate::metrics::{self, Error, counter_vec};

/// Buckets of report ages, seconds: one sync interval to past the default peer timeout.
const AGE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0];

/// What the exchange counts.
#[derive(Clone)]
pub struct Metrics {
    up: IntGaugeVec,
    age: Histogram,
    errors: IntCounterVec,
    reports: IntCounterVec,
    bytes: IntCounterVec,
    slots: IntCounterVec,
    early: IntCounter,
    last: Arc<Mutex<Counters>>,
}

impl Metrics {
    /// Registers the exchange's metrics, and the cluster gauges of `table`, in `registry`.
    pub fn register(registry: &Registry, table: &Arc<BackendTable>) -> Result<Self, Error> {
        metrics::register(
            registry,
            "tidegate_backend_cluster_*",
            ClusterGauges::new(Arc::clone(table))?,
        )?;
        let name = "tidegate_peer_up";
        let up = IntGaugeVec::new(
            Opts::new(
                name,
                "1 while a peer is heard from within peer_timeout, 0 once dropped.",
            ),
            &["peer"],
        )
        .map_err(|e| Error::new(name, e))?;
        let name = "tidegate_peer_sync_age_seconds";
        let opts = HistogramOpts::new(name, "Age of each live peer's newest report, every sync.")
            .buckets(AGE_BUCKETS.to_vec());
        let age = Histogram::with_opts(opts).map_err(|e| Error::new(name, e))?;
        let early_name = "tidegate_peer_early_syncs_total";
        let early = IntCounter::new(
            early_name,
            "Syncs brought forward because upgrades waited for a share.",
        )
        .map_err(|e| Error::new(early_name, e))?;
        Ok(Self {
            up: metrics::register(registry, "tidegate_peer_up", up)?,
            age: metrics::register(registry, name, age)?,
            errors: counter_vec(
                registry,
                "tidegate_peer_sync_errors_total",
                "Failed pushes to peers and refused reports from them, by kind.",
                &["kind"],
            )?,
            reports: counter_vec(
                registry,
                "tidegate_peer_reports_total",
                "Reports received from peers, by result (fresh, stale, dropped, myself).",
                &["result"],
            )?,
            bytes: counter_vec(
                registry,
                "tidegate_peer_report_bytes_total",
                "Report bytes pushed to peers (sent) and received from them.",
                &["direction"],
            )?,
            slots: counter_vec(
                registry,
                "tidegate_share_slots_total",
                "Slots of backend caps claimed, given, received and destroyed by this replica.",
                &["change"],
            )?,
            early: metrics::register(registry, early_name, early)?,
            last: Arc::default(),
        })
    }

    pub(super) fn received(&self, r: Received) {
        let label = match r {
            Received::Fresh => "fresh",
            Received::Stale => "stale",
            Received::Dropped => "dropped",
            Received::Myself => "myself",
        };
        self.reports.with_label_values(&[label]).inc();
    }

    pub(super) fn bad_report(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    pub(super) fn early_tick(&self) {
        self.early.inc();
    }

    pub(super) fn bytes(&self, direction: &str, n: usize) {
        self.bytes.with_label_values(&[direction]).inc_by(n as u64);
    }

    /// Sets `tidegate_peer_up` for every peer known and observes every live report's age.
    pub(super) fn peers(&self, up: &[(String, bool)], ages: &[Duration]) {
        self.up.reset();
        for (peer, live) in up {
            self.up
                .with_label_values(&[peer.as_str()])
                .set(i64::from(*live));
        }
        for a in ages {
            self.age.observe(a.as_secs_f64());
        }
    }

    /// Adds what the node did since the last call.
    pub(super) fn counters(&self, now: Counters) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (label, n, before) in [
            ("claimed", now.claimed, last.claimed),
            ("given", now.given, last.given),
            ("received", now.received, last.received),
            ("destroyed", now.destroyed, last.destroyed),
        ] {
            if n > before {
                self.slots.with_label_values(&[label]).inc_by(n - before);
            }
        }
        *last = now;
    }
}

/// `tidegate_backend_cluster_connections` and `tidegate_backend_share`, from the table at
/// each scrape.
#[derive(Clone)]
struct ClusterGauges {
    table: Arc<BackendTable>,
    cluster: IntGaugeVec,
    share: IntGaugeVec,
    scrape: Arc<Mutex<()>>,
}

impl ClusterGauges {
    fn new(table: Arc<BackendTable>) -> Result<Self, Error> {
        let vec = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["backend"]).map_err(|e| Error::new(name, e))
        };
        Ok(Self {
            table,
            cluster: vec(
                "tidegate_backend_cluster_connections",
                "Live WebSockets per backend over every replica, as of the last exchange.",
            )?,
            share: vec(
                "tidegate_backend_share",
                "This replica's share of each backend's cap.",
            )?,
            scrape: Arc::default(),
        })
    }
}

impl Collector for ClusterGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.cluster.desc();
        d.extend(self.share.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.cluster.reset();
        self.share.reset();
        for b in &self.table.load_snapshot(Instant::now()).backends {
            let label = b.address.to_string();
            let label = [label.as_str()];
            let cluster = i64::from(b.cluster_live);
            self.cluster.with_label_values(&label).set(cluster);
            if let Some(share) = b.share {
                self.share.with_label_values(&label).set(i64::from(share));
            }
        }
        let mut out = self.cluster.collect();
        out.extend(self.share.collect());
        out
    }
}
