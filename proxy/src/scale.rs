//! The live scaler loop: observe the backend table every second, let the policy decide, and hand
//! the decision to a [`ScaleTarget`] — the seam behind which sit the local process pool and, in
//! a cluster, the Deployment.
//!
//! The loop is thin on purpose: the policy (pure, time passed in) lives in `tidegate_scaler`,
//! the actuation (processes, API calls, retries) in the target. Decisions are level-triggered:
//! the newest desired count wins and a pending change is superseded.

pub mod local;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tidegate_common::LoadSnapshot;
use tidegate_scaler::policy::{Action, PodObservation};
use tidegate_scaler::{Observation, Policy};
use tracing::{info, info_span};

use crate::shared::Shared;
pub use status::{ScalerMetrics, ScalerStatus, StatusView};

/// Something whose replica count the scaler sets.
pub trait ScaleTarget: Send + Sync {
    /// The target's pods as the policy sees them, with live counts from `load`.
    fn pods(&self, load: &LoadSnapshot) -> Vec<PodObservation>;
    /// The serving replica count asked for now.
    fn desired(&self) -> u32;
    /// Asks for `replicas` replicas of which `serving` take new connections (the rest are
    /// drained standby). Returns at once; the target converges on its own.
    fn set_desired(&self, replicas: u32, serving: u32);
}

/// The scaler as a pingora background service.
pub struct ScalerService {
    shared: Arc<Shared>,
    target: Arc<dyn ScaleTarget>,
    policy: std::sync::Mutex<Option<Box<dyn Policy>>>,
    dry_run: bool,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
}

impl ScalerService {
    /// A scaler driving `target` with `policy`.
    pub fn new(
        shared: Arc<Shared>,
        target: Arc<dyn ScaleTarget>,
        policy: Box<dyn Policy>,
        dry_run: bool,
    ) -> Self {
        Self {
            shared,
            target,
            policy: std::sync::Mutex::new(Some(policy)),
            dry_run,
            leading: None,
        }
    }

    /// Runs the loop only while `leading` is true (leader election); without it, always.
    pub fn with_leadership(mut self, leading: tokio::sync::watch::Receiver<bool>) -> Self {
        self.leading = Some(leading);
        self
    }

    fn leading(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }
}

#[async_trait]
impl BackgroundService for ScalerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.policy.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut policy) = taken else { return };
        let status = &self.shared.scaler;
        status.set_leader(self.leading());
        let epoch = Instant::now();
        let mut ticks = tokio::time::interval(policy.sample_period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rejected = self.shared.metrics.rejected_total();
        let mut next_decision = Duration::ZERO;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => break,
            }
            if !self.leading() {
                status.set_leader(false);
                continue;
            }
            status.set_leader(true);
            let now = epoch.elapsed();
            let load = self.shared.table.load_snapshot(Instant::now());
            let pods = self.target.pods(&load);
            let rejected = self.shared.metrics.rejected_total();
            let refused = u32::try_from(rejected.saturating_sub(last_rejected)).unwrap_or(u32::MAX);
            last_rejected = rejected;
            let obs = Observation {
                pods: &pods,
                desired: self.target.desired(),
                queued: u32::try_from(load.waiting).unwrap_or(u32::MAX),
                refused,
            };
            policy.observe(now, &obs);
            if now < next_decision {
                continue;
            }
            next_decision = now + policy.period();
            let decision = info_span!("scaling_tick").in_scope(|| policy.decide(now, &obs));
            if decision.reason.action != Action::Hold {
                info!(replicas = decision.replicas, reason = %decision.reason, dry_run = self.dry_run, "scaling");
            }
            if !self.dry_run {
                let serving = decision.serving.unwrap_or(decision.replicas);
                self.target.set_desired(decision.replicas, serving);
            }
            status.record(&obs, &decision);
        }
        status.set_leader(false);
    }
}
