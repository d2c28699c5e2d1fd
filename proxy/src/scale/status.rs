//! What the scaler shows: the `scaler` object of `/api/v1/state`, the `tidegate_scaler_*`
//! metrics, and the per-second history the status page draws (sampled by the admin listener's
//! history service whether or not a scaler runs here; the scaler's figures join it when it does).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use tidegate_common::{BackendState, LoadSnapshot};
use tidegate_scaler::Decision;
use tidegate_scaler::Observation;
use tidegate_scaler::policy::Action;

/// Seconds of per-tick history kept for the status page.
const HISTORY: usize = 600;
/// Decisions kept (the ones that changed something).
const DECISIONS: usize = 30;

/// One second of the loop, for charts.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub t_ms: u64,
    /// Live WebSockets.
    pub live: u64,
    /// Upgrades waiting in the queue.
    pub waiting: u64,
    /// Capacity of routable backends.
    pub capacity: u64,
    /// The forecast at the boot horizon (when a scaler runs here).
    pub forecast: Option<f64>,
    /// Replicas the scaler asks for (when a scaler runs here).
    pub desired: Option<u32>,
    /// Backends that take new connections.
    pub ready: u32,
    /// 503s since start.
    pub rejected: u64,
}

/// A decision that changed the replica count.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionRecord {
    /// Unix time, milliseconds.
    pub t_ms: u64,
    /// Replicas asked for.
    pub replicas: u32,
    /// The policy's one-line reason.
    pub reason: String,
}

/// The `scaler` object of `/api/v1/state`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusView {
    /// Whether this instance runs the scaler (holds the lease, in a cluster).
    pub leader: bool,
    /// Serving replicas asked for.
    pub desired_replicas: u32,
    /// Replicas taking connections.
    pub ready_replicas: u32,
    /// Replicas still starting.
    pub booting_replicas: u32,
    /// Replicas being drained before removal.
    pub draining_replicas: u32,
    /// Forecast total connections at now + horizon.
    pub forecast_connections: Option<f64>,
    /// The forecast's horizon, seconds.
    pub forecast_horizon_seconds: Option<f64>,
    /// The newest decision's reason.
    pub last_decision: String,
    /// Decisions that changed the replica count, newest last.
    pub decisions: VecDeque<DecisionRecord>,
}

/// The scaler's status, shared with the admin listener.
#[derive(Default)]
pub struct ScalerStatus {
    view: Mutex<Option<StatusView>>,
    history: Mutex<VecDeque<Sample>>,
    metrics: Option<ScalerMetrics>,
}

/// `tidegate_scaler_*` metrics.
#[derive(Clone)]
pub struct ScalerMetrics {
    desired: IntGauge,
    forecast: IntGauge,
    /// `tidegate_scaler_decisions_total{direction}`.
    pub decisions: IntCounterVec,
    /// `tidegate_scaler_errors_total{kind}`.
    pub errors: IntCounterVec,
}

impl ScalerMetrics {
    /// Creates and registers the scaler metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            desired: IntGauge::new(
                "tidegate_scaler_desired_replicas",
                "Serving replicas the scaler asks for.",
            )?,
            forecast: IntGauge::new(
                "tidegate_scaler_forecast_connections",
                "Forecast total connections at the boot horizon.",
            )?,
            decisions: IntCounterVec::new(
                Opts::new(
                    "tidegate_scaler_decisions_total",
                    "Scaler decisions by direction.",
                ),
                &["direction"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "tidegate_scaler_errors_total",
                    "Scaler actuation errors by kind.",
                ),
                &["kind"],
            )?,
        };
        registry.register(Box::new(m.desired.clone()))?;
        registry.register(Box::new(m.forecast.clone()))?;
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ScalerStatus {
    /// A status that also updates `metrics`.
    pub fn with_metrics(metrics: ScalerMetrics) -> Self {
        Self {
            view: Mutex::new(None),
            history: Mutex::default(),
            metrics: Some(metrics),
        }
    }

    /// The scaler metrics, if registered.
    pub fn metrics(&self) -> Option<&ScalerMetrics> {
        self.metrics.as_ref()
    }

    fn with_view<R>(&self, f: impl FnOnce(&mut StatusView) -> R) -> R {
        let mut guard = self.view.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.get_or_insert_with(StatusView::default))
    }

    /// Marks whether this instance runs the scaler.
    pub fn set_leader(&self, leader: bool) {
        self.with_view(|v| v.leader = leader);
    }

    /// A copy for the API, or `None` when no scaler runs.
    pub fn view(&self) -> Option<StatusView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last ten minutes, one sample a second, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Adds one second to the history: the table's counts, with the scaler's latest figures
    /// when a scaler runs here.
    pub fn sample(&self, load: &LoadSnapshot, rejected: u64) {
        let scaler = self.view().filter(|v| v.leader);
        let sample = Sample {
            t_ms: unix_ms(),
            live: load.total_live(),
            waiting: load.waiting as u64,
            capacity: load.routable_capacity(),
            forecast: scaler.as_ref().and_then(|v| v.forecast_connections),
            desired: scaler.as_ref().map(|v| v.desired_replicas),
            ready: load
                .backends
                .iter()
                .filter(|b| b.state == BackendState::Ready)
                .count() as u32,
            rejected,
        };
        push_bounded(
            &mut self.history.lock().unwrap_or_else(|p| p.into_inner()),
            sample,
            HISTORY,
        );
    }

    /// Records one decision of the loop.
    pub fn record(&self, obs: &Observation<'_>, d: &Decision) {
        let forecast = d.forecast.map(|f| f.connections);
        let t_ms = unix_ms();
        if let Some(m) = &self.metrics {
            m.desired.set(i64::from(d.replicas));
            m.forecast.set(forecast.map_or(0, |f| f.round() as i64));
            let direction = match d.reason.action {
                Action::ScaleUp => "up",
                Action::ScaleDown => "down",
                Action::Hold => "hold",
            };
            m.decisions.with_label_values(&[direction]).inc();
        }
        self.with_view(|v| {
            v.desired_replicas = d.replicas;
            v.ready_replicas = obs.ready();
            v.booting_replicas = obs.booting();
            v.draining_replicas = obs.draining();
            v.forecast_connections = forecast;
            v.forecast_horizon_seconds = d.forecast.map(|f| f.horizon.as_secs_f64());
            v.last_decision = d.reason.to_string();
            if d.reason.action != Action::Hold {
                push_bounded(
                    &mut v.decisions,
                    DecisionRecord {
                        t_ms,
                        replicas: d.replicas,
                        reason: v.last_decision.clone(),
                    },
                    DECISIONS,
                );
            }
        });
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: usize) {
    if q.len() == max {
        q.pop_front();
    }
    q.push_back(item);
}
