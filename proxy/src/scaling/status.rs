//! What the scaler shows: the `scaler` object of `/api/v1/state` ([`View`]) and the
//! `tidegate_scaler_*` gauges and counters.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGauge, Registry};
use serde::Serialize;
use tidegate_scaler::policy::Action;
use tidegate_scaler::{Decision, Observation};
use tokio::sync::watch;

use crate::metrics::{Error, counter_vec, gauge};

/// Decisions kept (the ones that changed something).
const DECISIONS: usize = 30;

/// A decision that changed the replica count.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// Unix time, milliseconds.
    pub t_ms: u64,
    /// Replicas asked for.
    pub replicas: u32,
    /// The policy's one-line reason.
    pub reason: String,
}

/// The `scaler` object of `/api/v1/state`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct View {
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
    pub decisions: VecDeque<Change>,
}

/// The scaler's status, written by the loop and read by the admin listener.
pub struct Status {
    view: Mutex<View>,
    leading: Option<watch::Receiver<bool>>,
    desired: IntGauge,
    forecast: IntGauge,
    decisions: IntCounterVec,
}

impl Status {
    /// A status whose `leader` follows `leading` (always true without leader election); its
    /// metrics are registered in `registry`.
    pub fn new(registry: &Registry, leading: Option<watch::Receiver<bool>>) -> Result<Self, Error> {
        Ok(Self {
            view: Mutex::new(View::default()),
            leading,
            desired: gauge(
                registry,
                "tidegate_scaler_desired_replicas",
                "Serving replicas the scaler asks for.",
            )?,
            forecast: gauge(
                registry,
                "tidegate_scaler_forecast_connections",
                "Forecast total connections at the boot horizon.",
            )?,
            decisions: counter_vec(
                registry,
                "tidegate_scaler_decisions_total",
                "Scaler decisions by direction.",
                &["direction"],
            )?,
        })
    }

    /// Whether this instance decides now (holds the Lease, or there is no election).
    pub fn leader(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }

    /// A copy for the API.
    pub fn view(&self) -> View {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v.leader = self.leader();
        v
    }

    /// Records one decision of the loop.
    pub fn record(&self, obs: &Observation<'_>, d: &Decision) {
        let forecast = d.forecast.map(|f| f.connections);
        self.desired.set(i64::from(d.replicas));
        self.forecast.set(forecast.map_or(0, |f| f.round() as i64));
        let direction = match d.reason.action {
            Action::ScaleUp => "up",
            Action::ScaleDown => "down",
            Action::Hold => "hold",
        };
        self.decisions.with_label_values(&[direction]).inc();
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.desired_replicas = d.replicas;
        v.ready_replicas = obs.ready();
        v.booting_replicas = obs.booting();
        v.draining_replicas = obs.draining();
        v.forecast_connections = forecast;
        v.forecast_horizon_seconds = d.forecast.map(|f| f.horizon.as_secs_f64());
        v.last_decision = d.reason.to_string();
        if d.reason.action != Action::Hold {
            if v.decisions.len() == DECISIONS {
                v.decisions.pop_front();
            }
            let change = Change {
                t_ms: unix_ms(),
                replicas: d.replicas,
                reason: v.last_decision.clone(),
            };
            v.decisions.push_back(change);
        }
    }
}

/// Milliseconds since the Unix epoch, the time stamp of the admin API's records.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
