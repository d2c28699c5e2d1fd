//! The [`ScaleTarget`] for a Deployment, with drain-first actuation (`docs/architecture.md`,
//! "Scale-down removes the emptiest pods").
//!
//! The scaler loop hands the newest decision to [`Target::set_desired`], which only records it
//! (level-triggered: a newer decision replaces an older one that was not written yet).
//! [`Actuator`] converges on it, once a second and whenever it changes:
//!
//! 1. read the Deployment: `spec.replicas`, and the `tidegate.io/paused: "true"` annotation
//!    (a paused Deployment is left alone); warn once when its rollout strategy takes pods out
//!    of service before their replacements are Ready ([`strategy`]);
//! 2. plan with `tidegate_scaler::drain::plan` over the pods behind the discovered endpoints
//!    (ready pods, the ones being drained, and booting ones = `spec.replicas` minus endpoints);
//! 3. mark the pods to drain in the [`Catalog`] (no new connections; a pod is never made
//!    NotReady), and hand drained capacity back when demand returns; with
//!    `backends.kubernetes.drain_grace`, close the WebSockets of a pod drained that long and
//!    kept only for them with 1001 ([`super::drain_grace`]), so that it empties;
//! 4. set `controller.kubernetes.io/pod-deletion-cost: "-1000"` once on each pod to remove,
//!    so that the ReplicaSet deletes exactly those;
//! 5. patch `spec.replicas` through the `scale` subresource ([`super::writer`]), never outside
//!    `[min_replicas, max_replicas]` ([`scale`]), and record a `Scaled` Event ([`events`]).
//!
//! Only the Lease holder writes (when leader election is on).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tidegate_common::LoadSnapshot;
use tidegate_scaler::policy::{PodObservation, PodPhase};
use tokio::sync::watch;

use super::ScaleTarget;
use super::drain_grace::DrainGrace;
use crate::discovery::{Catalog, Condition, Endpoint};

mod actuator;
pub mod events;
pub mod scale;
pub mod strategy;

pub use actuator::Actuator;

/// Annotation that makes tidegate leave a Deployment alone (value `"true"`).
pub const PAUSED_ANNOTATION: &str = "tidegate.io/paused";
/// The ReplicaSet deletes pods with the lowest cost first (Kubernetes ≥ 1.22).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The cost given to the pods chosen for removal.
pub const VICTIM_DELETION_COST: &str = "-1000";

/// A decision: `replicas` pods of which `serving` take new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    /// `spec.replicas` asked for.
    pub replicas: u32,
    /// How many of them take new connections (the rest are drained standby).
    pub serving: u32,
}

/// What was last read from (or written to) the Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `spec.replicas`.
    pub replicas: Option<u32>,
    /// Whether it carries `tidegate.io/paused: "true"`.
    pub paused: bool,
    /// Its uid, for Events.
    pub uid: Option<String>,
}

/// The Deployment as the scaler sees it: pods from discovery, decisions recorded for
/// [`Actuator`] to carry out.
pub struct Target {
    catalog: Arc<Catalog>,
    min: u32,
    max: u32,
    remove_below: u32,
    order: watch::Sender<Option<Order>>,
    view: Mutex<View>,
    annotated: Mutex<HashSet<String>>,
    /// Pods that may carry a mark set by a previous leader (they were draining when this
    /// replica took over).
    inherited: Mutex<HashSet<String>>,
    writes: AtomicU64,
    reads: AtomicU64,
    last_failure: Mutex<Option<String>>,
    grace: Option<DrainGrace>,
}

impl Target {
    /// A target over the endpoints of `catalog`, keeping replicas within `[min, max]`; draining
    /// pods with at most `remove_below` connections may be removed.
    pub fn new(catalog: Arc<Catalog>, min: u32, max: u32, remove_below: u32) -> Self {
        Self {
            catalog,
            min,
            max: max.max(min),
            remove_below,
            order: watch::Sender::new(None),
            view: Mutex::new(View::default()),
            annotated: Mutex::new(HashSet::new()),
            inherited: Mutex::new(HashSet::new()),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            grace: None,
        }
    }

    /// Closes the connections of pods drained for longer than `grace` with 1001 once they are
    /// kept only for them (`backends.kubernetes.drain_grace`).
    pub fn with_drain_grace(mut self, grace: DrainGrace) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The discovered endpoints this target drains.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// What was last read from the Deployment.
    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_view(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.view.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Scale writes this instance has made (the leader's count grows; a follower's stays 0).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Times the Deployment has been read (one per convergence step that reached the API).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Acquire)
    }

    /// The newest decision, if any.
    pub fn order(&self) -> Option<Order> {
        *self.order.borrow()
    }

    fn clamp(&self, replicas: u32) -> u32 {
        replicas.clamp(self.min, self.max)
    }

    /// Forgets annotated pods that are no longer among the endpoints (they are gone).
    fn keep_annotations_of(&self, eps: &[Endpoint]) {
        for m in [&self.annotated, &self.inherited] {
            let mut set = m.lock().unwrap_or_else(|p| p.into_inner());
            set.retain(|pod| eps.iter().any(|e| e.pod.as_deref() == Some(pod.as_str())));
        }
    }

    /// Records the outcome of a write; true if a failure is new (worth an Event), so that a
    /// refusal repeated every second leaves one Event, not one a second.
    fn failure_is_new(&self, failure: Option<String>) -> bool {
        let mut last = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
        let new = failure.is_some() && *last != failure;
        *last = failure;
        new
    }

    /// Marks `pod` as annotated; false if it already was (the annotation is set once).
    fn first_annotation(&self, pod: &str) -> bool {
        let mut set = self.annotated.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(pod.to_owned())
    }

    /// Whether `pod` may carry a deletion-cost mark (set here, or by a previous leader).
    fn is_marked(&self, pod: &str) -> bool {
        let lock =
            |m: &Mutex<HashSet<String>>| m.lock().unwrap_or_else(|p| p.into_inner()).contains(pod);
        lock(&self.annotated) || lock(&self.inherited)
    }

    /// `pod` carries no mark (any more).
    fn forget_mark(&self, pod: &str) {
        for m in [&self.annotated, &self.inherited] {
            m.lock().unwrap_or_else(|p| p.into_inner()).remove(pod);
        }
    }

    /// On taking over: every draining pod may carry the previous leader's mark.
    fn inherit_marks(&self) {
        let (eps, draining) = self.catalog.snapshot();
        let pods = eps
            .iter()
            .filter(|e| draining.contains(&e.address))
            .filter_map(|e| e.pod.clone());
        let mut set = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
        set.extend(pods);
    }

    /// Pods this replica knows or suspects to carry a deletion-cost mark.
    pub fn marked(&self) -> Vec<String> {
        let mut all: Vec<String> = [&self.annotated, &self.inherited]
            .iter()
            .flat_map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

impl ScaleTarget for Target {
    fn pods(&self, load: &LoadSnapshot) -> Vec<PodObservation> {
        let (eps, draining) = self.catalog.snapshot();
        observations(&eps, &draining, self.view().replicas, load)
    }

    fn desired(&self) -> u32 {
        self.order()
            .map(|w| w.replicas)
            .or(self.view().replicas)
            .unwrap_or(self.min)
    }

    fn set_desired(&self, replicas: u32, serving: u32) {
        let replicas = self.clamp(replicas);
        let order = Order {
            replicas,
            serving: serving.min(replicas),
        };
        self.order
            .send_if_modified(|w| w.replace(order) != Some(order));
    }
}

/// A stable id for the pod behind `ep` (its name, else its address), hashed.
pub fn pod_id(ep: &Endpoint) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    match &ep.pod {
        Some(name) => name.hash(&mut h),
        None => ep.address.hash(&mut h),
    }
    h.finish() >> 1
}

/// The Deployment's pods as the policy sees them: ready endpoints (draining ones marked),
/// endpoints not ready yet, and, as booting, the rest of `spec.replicas` that has no endpoint
/// yet. Terminating endpoints are on their way out and are not counted.
pub fn observations(
    eps: &[Endpoint],
    draining: &HashSet<std::net::SocketAddr>,
    spec_replicas: Option<u32>,
    load: &LoadSnapshot,
) -> Vec<PodObservation> {
    // Over every replica: a pod that is empty here may be full on a peer.
    let live = |ep: &Endpoint| {
        load.backends
            .iter()
            .find(|b| b.address == ep.address)
            .map_or(0, |b| b.cluster_occupied)
    };
    let mut pods: Vec<PodObservation> = eps
        .iter()
        .filter_map(|ep| {
            let phase = match ep.condition {
                Condition::Ready if draining.contains(&ep.address) => PodPhase::Draining,
                Condition::Ready => PodPhase::Ready,
                Condition::NotReady => PodPhase::Booting,
                Condition::Terminating | Condition::Stopping => return None,
            };
            Some(PodObservation {
                id: pod_id(ep),
                phase,
                connections: Some(live(ep)),
            })
        })
        .collect();
    let missing = spec_replicas.unwrap_or(0).saturating_sub(pods.len() as u32);
    pods.extend((0..u64::from(missing)).map(|i| PodObservation {
        id: u64::MAX - i,
        phase: PodPhase::Booting,
        connections: Some(0),
    }));
    pods
}

#[cfg(test)]
mod tests;
