//! The proxy's Prometheus metrics, registered into one registry that the admin listener serves.
//!
//! Gauges of per-backend counts are read from the backend table at scrape time, so they are
//! exactly the table's counts and cost nothing on the connection path. Labels are bounded:
//! backend addresses (bounded by the Deployment) and fixed reason/result words.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tidegate_common::LoadSnapshot;

/// Every metric the data plane exports.
#[derive(Clone)]
pub struct ProxyMetrics {
    registry: Registry,
    /// Serialises scrapes: the per-backend gauges are reset and refilled for each one.
    render_lock: std::sync::Arc<std::sync::Mutex<()>>,
    backend_live: IntGaugeVec,
    backend_pending: IntGaugeVec,
    backend_capacity: IntGaugeVec,
    backend_inflight: IntGaugeVec,
    queue_waiting: IntGauge,
    /// `tidegate_upgrades_total{backend,result}`: upgrade attempts by outcome.
    pub upgrades: IntCounterVec,
    /// `tidegate_rejected_connections_total{reason}`: upgrades refused with 503.
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
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"))
}

impl ProxyMetrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let secs = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramOpts::new(name, help).buckets(buckets)
        };
        let m = Self {
            registry: Registry::new(),
            render_lock: Default::default(),
            backend_live: gauge_vec(
                "tidegate_backend_connections",
                "Live upgraded WebSockets per backend.",
                &["backend"],
            ),
            backend_pending: gauge_vec(
                "tidegate_backend_pending_connections",
                "Upgrades routed to a backend and waiting for its 101.",
                &["backend"],
            ),
            backend_capacity: gauge_vec(
                "tidegate_backend_capacity",
                "Most live + pending WebSockets a backend is given.",
                &["backend"],
            ),
            backend_inflight: gauge_vec(
                "tidegate_backend_inflight_requests",
                "Plain HTTP requests in flight per backend.",
                &["backend"],
            ),
            queue_waiting: IntGauge::new(
                "tidegate_queue_waiting",
                "Upgrades waiting for a slot now.",
            )
            .unwrap_or_else(|e| panic!("{e}")),
            upgrades: counter_vec(
                "tidegate_upgrades_total",
                "WebSocket upgrade attempts by backend and result.",
                &["backend", "result"],
            ),
            rejected: counter_vec(
                "tidegate_rejected_connections_total",
                "Upgrades answered 503 by the proxy, by reason.",
                &["reason"],
            ),
            bad_requests: counter_vec(
                "tidegate_bad_requests_total",
                "Requests refused before routing (400, 408, 431) or closed early, by reason.",
                &["reason"],
            ),
            http_requests: counter_vec(
                "tidegate_http_requests_total",
                "Plain HTTP requests proxied, by backend and status class.",
                &["backend", "code_class"],
            ),
            connection_duration: HistogramVec::new(
                secs(
                    "tidegate_connection_duration_seconds",
                    "Lifetime of upgraded WebSockets, by how they ended.",
                    vec![
                        1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
                    ],
                ),
                &["end"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
            queue_wait: Histogram::with_opts(secs(
                "tidegate_queue_wait_seconds",
                "Time upgrades waited in the queue for a slot.",
                vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ))
            .unwrap_or_else(|e| panic!("{e}")),
            connect_failures: counter_vec(
                "tidegate_backend_connect_failures_total",
                "Failed TCP connects to a backend.",
                &["backend"],
            ),
            accept_errors: counter_vec(
                "tidegate_accept_errors_total",
                "Failed accepts on a listener (e.g. out of file descriptors).",
                &["listener"],
            ),
        };
        m.register_all();
        m
    }

    fn register_all(&self) {
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.backend_live.clone()),
            Box::new(self.backend_pending.clone()),
            Box::new(self.backend_capacity.clone()),
            Box::new(self.backend_inflight.clone()),
            Box::new(self.queue_waiting.clone()),
            Box::new(self.upgrades.clone()),
            Box::new(self.rejected.clone()),
            Box::new(self.bad_requests.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.connection_duration.clone()),
            Box::new(self.queue_wait.clone()),
            Box::new(self.connect_failures.clone()),
            Box::new(self.accept_errors.clone()),
        ];
        for c in all {
            self.registry
                .register(c)
                .unwrap_or_else(|e| panic!("registering a metric: {e}"));
        }
    }

    /// Upgrades refused with 503 since start, all reasons.
    pub fn rejected_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.rejected
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// The registry other components (scaler, config reload) register their metrics into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text format, with the table's counts as of now.
    pub fn render(&self, load: &LoadSnapshot) -> String {
        let _one_scrape_at_a_time = self.render_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.set_backend_gauges(load);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn set_backend_gauges(&self, load: &LoadSnapshot) {
        for g in [
            &self.backend_live,
            &self.backend_pending,
            &self.backend_capacity,
            &self.backend_inflight,
        ] {
            g.reset();
        }
        for b in &load.backends {
            let label = [b.address.to_string()];
            let label = [label[0].as_str()];
            self.backend_live
                .with_label_values(&label)
                .set(i64::from(b.live));
            self.backend_pending
                .with_label_values(&label)
                .set(i64::from(b.pending));
            self.backend_capacity
                .with_label_values(&label)
                .set(i64::from(b.capacity));
            self.backend_inflight
                .with_label_values(&label)
                .set(i64::from(b.inflight_requests));
        }
        self.queue_waiting
            .set(i64::try_from(load.waiting).unwrap_or(i64::MAX));
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}
