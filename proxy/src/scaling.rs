//! The live scaler loop: observe → decide → actuate, once a second.
//!
//! Each tick it reads the demand ([`Demand`]: per-backend counts, the queue and the refusals),
//! asks the pods of its [`ScaleTarget`], lets the pure policy of `tidegate_scaler` decide, and
//! hands the decision to the target — a Deployment, the local pool, or a dry run. The loop is
//! thin on purpose: the policy (time passed in) lives in `tidegate_scaler`, the actuation
//! (processes, API calls, retries) in the target. Decisions are level-triggered: the newest
//! desired count wins and a pending change is superseded. With leader election, only the
//! holder of the Lease decides; [`Status`] is what the admin API shows of it.
//!
//! Every replica *observes* every tick, leader or not: with peers its demand is the cluster's,
//! so a follower that takes over has the same history as the leader it replaces, and its
//! refusal baseline is this second's, not everything refused while it followed. A replica
//! that has observed for less than one scale-down window (it just started) never lowers the
//! replica count: it has not seen the demand that a window would remember.

mod demand;
pub mod status;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tidegate_common::LoadSnapshot;
use tidegate_scaler::policy::Action;
use tidegate_scaler::{Decision, Observation, Policy};
use tokio::sync::watch;
use tracing::{info, info_span};

use crate::target::ScaleTarget;
pub use status::{Status, View};

/// Where the scaler's input comes from: the counts of every backend and the demand the pods
/// could not take (queued and refused upgrades).
pub trait Demand: Send + Sync {
    /// Per-backend counts and the queue, now.
    fn load(&self) -> LoadSnapshot;
    /// Upgrades refused since start (the loop takes differences).
    fn refused_total(&self) -> u64;
}

/// The scaler as a pingora background service.
pub struct Scaler {
    target: Arc<dyn ScaleTarget>,
    policy: Mutex<Option<Box<dyn Policy>>>,
    demand: Arc<dyn Demand>,
    status: Arc<Status>,
    leading: Option<watch::Receiver<bool>>,
    warmup: Duration,
}

impl Scaler {
    /// A scaler reading `demand`, deciding with `policy`, driving `target`, and reporting to
    /// `status`; it lowers replicas only after observing for `warmup` (the policy's
    /// scale-down window).
    pub fn new(
        target: Arc<dyn ScaleTarget>,
        policy: Box<dyn Policy>,
        demand: Arc<dyn Demand>,
        status: Arc<Status>,
        warmup: Duration,
    ) -> Self {
        Self {
            target,
            policy: Mutex::new(Some(policy)),
            demand,
            status,
            leading: None,
            warmup,
        }
    }

    /// Runs the loop only while `leading` is true (leader election); without it, always.
    pub fn with_leadership(mut self, leading: watch::Receiver<bool>) -> Self {
        self.leading = Some(leading);
        self
    }

    fn leading(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }
}

#[async_trait]
impl BackgroundService for Scaler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.policy.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut policy) = taken else { return };
        let epoch = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(policy.sample_period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refused = self.demand.refused_total();
        let mut next_decision = Duration::ZERO;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => break,
            }
            let now = epoch.elapsed();
            let load = self.demand.load();
            let pods = self.target.pods(&load);
            let refused_total = self.demand.refused_total();
            let refused =
                u32::try_from(refused_total.saturating_sub(last_refused)).unwrap_or(u32::MAX);
            last_refused = refused_total;
            let obs = Observation {
                pods: &pods,
                desired: self.target.desired(),
                queued: u32::try_from(load.waiting).unwrap_or(u32::MAX),
                refused,
            };
            policy.observe(now, &obs);
            if !self.leading() || now < next_decision {
                continue;
            }
            next_decision = now + policy.period();
            let decision = info_span!("scaling_tick").in_scope(|| policy.decide(now, &obs));
            self.act(now, &obs, decision);
        }
    }
}

impl Scaler {
    /// Hands `decision` to the target — unless it lowers replicas before a whole scale-down
    /// window was observed, which is held (recorded, not carried out).
    fn act(&self, now: Duration, obs: &Observation<'_>, mut decision: Decision) {
        let current = self.target.desired().max(obs.pods.len() as u32);
        if decision.replicas < current && now < self.warmup {
            decision.replicas = current;
            decision.serving = None;
            decision.reason.action = Action::Hold;
            decision.reason.note = "warming up: no scale-down before one scale-down window";
            self.status.record(obs, &decision);
            return;
        }
        if decision.reason.action != Action::Hold {
            info!(replicas = decision.replicas, reason = %decision.reason, "scaling");
        }
        let serving = decision.serving.unwrap_or(decision.replicas);
        self.target.set_desired(decision.replicas, serving);
        self.status.record(obs, &decision);
    }
}

#[cfg(test)]
mod tests;
