//! The last ten minutes, one sample a second: what `/api/v1/history` serves and the status page
//! draws. Sampled from the backend table whether or not a scaler runs here; the scaler's
//! figures (desired replicas, forecast) join each sample when it leads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use tidegate_common::{BackendState, LoadSnapshot};

use crate::dataplane::Proxy;
use crate::scaling::{self, Status};

/// Samples kept: ten minutes at one a second.
const SAMPLES: usize = 600;
/// Time between two samples.
const EVERY: Duration = Duration::from_secs(1);

/// One second of the loop, for charts.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub t_ms: u64,
    /// Live WebSockets through this replica.
    pub live: u64,
    /// Live WebSockets over every replica, as of the last exchange (`live` without peers).
    pub cluster_live: u64,
    /// Upgrades waiting in the queue.
    pub waiting: u64,
    /// Capacity of routable backends.
    pub capacity: u64,
    /// The forecast at the boot horizon (when a scaler leads here).
    pub forecast: Option<f64>,
    /// Replicas the scaler asks for (when a scaler leads here).
    pub desired: Option<u32>,
    /// Backends that take new connections.
    pub ready: u32,
    /// 503s since start.
    pub rejected: u64,
}

/// The samples, oldest first.
#[derive(Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    /// A copy of every sample, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        samples.iter().cloned().collect()
    }

    /// Adds one second: the table's counts, with the scaler's latest figures when it leads.
    pub fn sample(&self, load: &LoadSnapshot, rejected: u64, scaler: Option<&Status>) {
        let scaler = scaler.map(Status::view).filter(|v| v.leader);
        let ready = load
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Ready)
            .count();
        let sample = Sample {
            t_ms: scaling::status::unix_ms(),
            live: load.total_live(),
            cluster_live: load.total_cluster_live(),
            waiting: load.waiting as u64,
            capacity: load.routable_capacity(),
            forecast: scaler.as_ref().and_then(|v| v.forecast_connections),
            desired: scaler.as_ref().map(|v| v.desired_replicas),
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            rejected,
        };
        let mut samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }
}

/// Samples once a second until shutdown.
pub struct Sampler {
    /// Where the samples go.
    pub history: Arc<History>,
    /// What is sampled.
    pub proxy: Arc<Proxy>,
    /// The scaler's status, when a scaler runs here.
    pub scaler: Option<Arc<Status>>,
}

#[async_trait]
impl BackgroundService for Sampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            let load = self.proxy.table.load_snapshot(Instant::now());
            let rejected = self.proxy.metrics.rejected_total();
            self.history.sample(&load, rejected, self.scaler.as_deref());
        }
    }
}
