//! The data plane's Prometheus metrics.
//!
//! Gauges of per-backend counts are read from the backend table at scrape time by
//! [`BackendSeries`], so they are exactly the table's counts, cost nothing on the connection
//! path, and a backend that has left the table leaves the scrape with it. The per-backend
//! counters are served by the same collector, which first removes the series of backends that
//! have left the table: a Deployment's pods come and go, and their addresses must not pile up
//! in every scrape for the life of the process. Labels are bounded: backend addresses (bounded
//! by the Deployment, and now by the table) and fixed reason/result words.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tidegate_common::BackendTable;

use crate::metrics::{self, Error, counter_vec, histogram_vec};

fn unregistered(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, Error> {
    IntCounterVec::new(Opts::new(name, help), labels).map_err(|e| Error::new(name, e))
}

/// Counters and histograms the connection paths update.
#[derive(Clone)]
pub struct Metrics {
    /// `tidegate_upgrades_total{backend,result}`: upgrade attempts by outcome.
    pub upgrades: IntCounterVec,
    /// `tidegate_rejected_connections_total{reason}`: upgrades refused with 503 (or 502).
    pub rejected: IntCounterVec,
    /// `tidegate_bad_requests_total{reason}`: 400 / 408 / 431 answers and early closes.
    pub bad_requests: IntCounterVec,
    /// `tidegate_http_requests_total{backend,code_class}`: plain HTTP requests proxied.
    pub http_requests: IntCounterVec,
    /// `tidegate_connection_duration_seconds{end}`: how long upgraded connections lived.
    pub connection_duration: HistogramVec,
    /// `tidegate_queue_wait_seconds`: time upgrades waited for a slot.
    pub queue_wait: Histogram,
    /// `tidegate_backend_connect_failures_total{backend}`: failed connects (the backend is
    /// then ejected for `eject_for`).
    pub connect_failures: IntCounterVec,
    /// `tidegate_accept_errors_total{listener}`: failed accepts (e.g. out of file descriptors).
    pub accept_errors: IntCounterVec,
    /// `tidegate_websocket_closes_total{cause}`: WebSockets the proxy asked to close (shutdown,
    /// backend_drained); how each ended is in `connection_duration{end}`.
    pub websocket_closes: IntCounterVec,
}

/// Buckets of WebSocket lifetimes, seconds: a second to a day.
const LIFETIME_BUCKETS: [f64; 9] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
];
/// Buckets of queue waits, seconds.
const QUEUE_BUCKETS: [f64; 11] = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Metrics {
    /// Creates the data plane's metrics in `registry`, with the per-backend gauges of `table`.
    pub fn register(registry: &Registry, table: &Arc<BackendTable>) -> Result<Self, Error> {
        let upgrades = unregistered(
            "tidegate_upgrades_total",
            "WebSocket upgrade attempts by backend and result.",
            &["backend", "result"],
        )?;
        let http_requests = unregistered(
            "tidegate_http_requests_total",
            "Plain HTTP requests proxied, by backend and status class.",
            &["backend", "code_class"],
        )?;
        let connect_failures = unregistered(
            "tidegate_backend_connect_failures_total",
            "Failed TCP connects to a backend.",
            &["backend"],
        )?;
        let counters = [
            upgrades.clone(),
            http_requests.clone(),
            connect_failures.clone(),
        ];
        let series = BackendSeries::new(Arc::clone(table), counters)?;
        metrics::register(registry, "tidegate_backend_*", series)?;
        let name = "tidegate_queue_wait_seconds";
        let opts = HistogramOpts::new(name, "Time upgrades waited in the queue for a slot.")
            .buckets(QUEUE_BUCKETS.to_vec());
        let queue_wait = Histogram::with_opts(opts).map_err(|e| Error::new(name, e))?;
        let queue_wait = metrics::register(registry, name, queue_wait)?;
        Ok(Self {
            upgrades,
            rejected: counter_vec(
                registry,
                "tidegate_rejected_connections_total",
                "Upgrades answered 503 by the proxy, by reason.",
                &["reason"],
            )?,
            bad_requests: counter_vec(
                registry,
                "tidegate_bad_requests_total",
                "Requests refused before routing (400, 408, 431), closed early, or given up in the queue, by reason.",
                &["reason"],
            )?,
            http_requests,
            connection_duration: histogram_vec(
                registry,
                "tidegate_connection_duration_seconds",
                "Lifetime of upgraded WebSockets, by how they ended.",
                &["end"],
                LIFETIME_BUCKETS.to_vec(),
            )?,
            queue_wait,
            connect_failures,
            accept_errors: counter_vec(
                registry,
                "tidegate_accept_errors_total",
                "Failed accepts on a listener (e.g. out of file descriptors).",
                &["listener"],
            )?,
            websocket_closes: counter_vec(
                registry,
                "tidegate_websocket_closes_total",
                "WebSockets the proxy closed with a 1001 close frame (or cut trying), by cause.",
                &["cause"],
            )?,
        })
    }

    /// Upgrades refused since start, all reasons.
    pub fn rejected_total(&self) -> u64 {
        metrics::counter_total(&self.rejected)
    }
}

/// The per-backend gauges and the queue gauge, filled from the table at each scrape, and the
/// per-backend counters, rid of the series of backends no longer in the table first.
#[derive(Clone)]
pub struct BackendSeries {
    table: Arc<BackendTable>,
    counters: [IntCounterVec; 3],
    live: IntGaugeVec,
    pending: IntGaugeVec,
    capacity: IntGaugeVec,
    inflight: IntGaugeVec,
    waiting: IntGauge,
    /// Serialises scrapes: the gauges are reset and refilled for each one.
    scrape: Arc<Mutex<()>>,
}

impl BackendSeries {
    fn new(table: Arc<BackendTable>, counters: [IntCounterVec; 3]) -> Result<Self, Error> {
        let vec = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["backend"]).map_err(|e| Error::new(name, e))
        };
        Ok(Self {
            table,
            counters,
            live: vec(
                "tidegate_backend_connections",
                "Live upgraded WebSockets per backend.",
            )?,
            pending: vec(
                "tidegate_backend_pending_connections",
                "Upgrades routed to a backend and waiting for its 101.",
            )?,
            capacity: vec(
                "tidegate_backend_capacity",
                "Most live + pending WebSockets a backend is given.",
            )?,
            inflight: vec(
                "tidegate_backend_inflight_requests",
                "Plain HTTP requests in flight per backend.",
            )?,
            waiting: IntGauge::new("tidegate_queue_waiting", "Upgrades waiting for a slot now.")
                .map_err(|e| Error::new("tidegate_queue_waiting", e))?,
            scrape: Arc::default(),
        })
    }

    fn vecs(&self) -> [&IntGaugeVec; 4] {
        [&self.live, &self.pending, &self.capacity, &self.inflight]
    }

    /// Removes the counters' series whose `backend` is not in `present`.
    fn forget_departed(&self, present: &HashSet<String>) {
        for counter in &self.counters {
            for family in counter.collect() {
                for m in family.get_metric() {
                    let labels: HashMap<&str, &str> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.name(), l.value()))
                        .collect();
                    if labels.get("backend").is_some_and(|b| !present.contains(*b)) {
                        let _ = counter.remove(&labels);
                    }
                }
            }
        }
    }
}

impl Collector for BackendSeries {
    fn desc(&self) -> Vec<&Desc> {
        let mut d: Vec<&Desc> = self.vecs().iter().flat_map(|v| v.desc()).collect();
        d.extend(self.waiting.desc());
        d.extend(self.counters.iter().flat_map(|c| c.desc()));
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let load = self.table.load_snapshot(Instant::now());
        let present = load
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        self.forget_departed(&present);
        self.vecs().iter().for_each(|v| v.reset());
        for b in &load.backends {
            let label = b.address.to_string();
            let label = [label.as_str()];
            self.live.with_label_values(&label).set(i64::from(b.live));
            self.pending
                .with_label_values(&label)
                .set(i64::from(b.pending));
            self.capacity
                .with_label_values(&label)
                .set(i64::from(b.capacity));
            self.inflight
                .with_label_values(&label)
                .set(i64::from(b.inflight_requests));
        }
        self.waiting
            .set(i64::try_from(load.waiting).unwrap_or(i64::MAX));
        let mut out: Vec<MetricFamily> = self.vecs().iter().flat_map(|v| v.collect()).collect();
        out.extend(self.waiting.collect());
        out.extend(self.counters.iter().flat_map(|c| c.collect()));
        out
    }
}
