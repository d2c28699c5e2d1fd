//! The actuation loop: read the Deployment, plan, drain, annotate, patch — once a second and
//! whenever the decision or leadership changes.
//!
//! Only the leader acts. A follower with peers keeps the drain marks the leader sends through
//! the exchange (so no replica routes a new connection to a pod about to go); without peers it
//! has no way to know them and clears its own. Every call runs within the call timeout (shorter
//! than the Lease's renew deadline), and the leadership is checked again right before the
//! scale write, so a leader whose Lease lapsed mid-step writes nothing. A deletion-cost mark
//! is removed as soon as its pod is no longer a victim (back in service, or the scale-down
//! superseded); a new leader removes the marks its predecessor may have left on pods it does
//! not remove.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{Patch, PatchParams};
use ::kube::{Api, Client};
use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, IntGauge, Registry};
use tidegate_scaler::drain;
use tokio::sync::watch;
use tracing::{info, warn};

use super::events::{self, Subject};
use super::scale::{Outcome, Writer};
use super::strategy::Rollout;
use super::{
    DELETION_COST_ANNOTATION, PAUSED_ANNOTATION, Target, VICTIM_DELETION_COST, View, pod_id,
};
use crate::config::{DeploymentRef, KubeClientConfig};
use crate::discovery::Condition;
use crate::kube::{Error, connect, within};

/// How often the loop converges when nothing changes.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Carries out a [`Target`]'s decisions as a pingora background service.
pub struct Actuator {
    target: Arc<Target>,
    deployment: DeploymentRef,
    client: KubeClientConfig,
    leading: Option<watch::Receiver<bool>>,
    errors: IntCounterVec,
    rollout_unavailable: IntGauge,
    /// The rollout setting last warned about, until one that costs nothing replaces it.
    rollout_warned: Mutex<Option<String>>,
    /// A `RolloutUnsafe` Event waiting for the end of the step.
    queued_event: Mutex<Option<Event>>,
    follow_peers: bool,
    timeout: Duration,
    led: AtomicBool,
}

struct Apis {
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    events: Api<Event>,
}

impl Actuator {
    /// Carries out `target`'s decisions on `deployment` with the credentials of `client`,
    /// only while `leading` says so (`None`: always). Registers
    /// `tidegate_scaler_errors_total{kind}` (actuation errors) and
    /// `tidegate_deployment_rollout_unavailable_pods` in `registry`.
    pub fn new(
        target: Arc<Target>,
        deployment: DeploymentRef,
        client: KubeClientConfig,
        leading: Option<watch::Receiver<bool>>,
        registry: &Registry,
    ) -> Result<Self, crate::metrics::Error> {
        let errors = crate::metrics::counter_vec(
            registry,
            "tidegate_scaler_errors_total",
            "Errors carrying out scaling decisions (reads, annotations, scale writes), by kind.",
            &["kind"],
        )?;
        let rollout_unavailable = crate::metrics::gauge(
            registry,
            "tidegate_deployment_rollout_unavailable_pods",
            "Pods a rollout of the scaled Deployment takes out of service before their \
             replacements are Ready (its maxUnavailable, or every pod with Recreate); above 0, \
             every rollout refuses connections until the replacements boot.",
        )?;
        Ok(Self {
            target,
            deployment,
            client,
            leading,
            errors,
            rollout_unavailable,
            rollout_warned: Mutex::new(None),
            queued_event: Mutex::new(None),
            follow_peers: false,
            timeout: crate::kube::DEFAULT_CALL_TIMEOUT,
            led: AtomicBool::new(false),
        })
    }

    /// With peers, a follower keeps the drain marks the leader sends instead of clearing them.
    pub fn following_peers(mut self, follow: bool) -> Self {
        self.follow_peers = follow;
        self
    }

    /// Gives every API call at most `timeout`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Actuation errors counted so far of `kind` (a `kube::Error::metric_label`).
    pub fn errors(&self, kind: &str) -> u64 {
        self.errors.with_label_values(&[kind]).get()
    }

    fn leading(&self) -> bool {
        self.leading.as_ref().is_none_or(|l| *l.borrow())
    }

    fn count(&self, e: &Error) {
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }

    /// Reads the Deployment into the target's [`View`].
    async fn refresh(&self, apis: &Apis) -> Result<View, Error> {
        let get = apis.deployments.get(&self.deployment.name);
        let d = within(self.timeout, "get deployment", get)
            .await
            .inspect_err(|e| self.count(e))?;
        let paused = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true");
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if let Some(spec) = &d.spec {
            self.heed_rollout(&Rollout::of(spec), d.metadata.uid.clone());
        }
        let view = View {
            replicas: u32::try_from(replicas).ok(),
            paused,
            uid: d.metadata.uid.clone(),
        };
        let was = self.target.view();
        if was.paused != paused {
            info!(deployment = %self.deployment.name, paused, "pause annotation changed");
        }
        self.target.set_view(|s| *s = view.clone());
        self.target.reads.fetch_add(1, Ordering::AcqRel);
        Ok(view)
    }

    /// Exports what a rollout would take away and, once per setting that costs capacity, says
    /// so: a warning in the log from every replica, and from the leader a `RolloutUnsafe` Event,
    /// queued for [`Self::record_queued`] so that, like `Scaled`, it is posted after the step's
    /// scale write. A percentage that costs nothing at a few replicas and a pod at more is one
    /// setting: the fleet growing past the point and shrinking back does not warn again.
    fn heed_rollout(&self, rollout: &Rollout, uid: Option<String>) {
        self.rollout_unavailable.set(i64::from(rollout.unavailable));
        let mut warned = self
            .rollout_warned
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if warned.as_deref() == Some(rollout.setting.as_str()) {
            return;
        }
        let name = format!("{}/{}", self.deployment.namespace, self.deployment.name);
        let Some(message) = rollout.warning(&name) else {
            *warned = None;
            return;
        };
        *warned = Some(rollout.setting.clone());
        drop(warned);
        warn!(deployment = %self.deployment.name, "{message}");
        if self.leading() {
            let subject = Subject {
                namespace: self.deployment.namespace.clone(),
                name: self.deployment.name.clone(),
                uid,
            };
            let event = events::event(&subject, events::REASON_ROLLOUT_UNSAFE, message, true);
            *self.queued_event.lock().unwrap_or_else(|e| e.into_inner()) = Some(event);
        }
    }

    /// Posts the Event [`Self::heed_rollout`] queued, if any (best effort, counted on failure).
    async fn record_queued(&self, apis: &Apis) {
        let queued = self
            .queued_event
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(event) = queued
            && let Err(e) = events::record(&apis.events, &event, self.timeout).await
        {
            self.count(&e);
        }
    }

    /// One convergence step. Errors of reads and annotations are counted here, those of the
    /// scale write by the writer.
    async fn reconcile(
        &self,
        apis: &Apis,
        writer: &mut Writer,
        orders: &mut watch::Receiver<Option<super::Order>>,
    ) -> Result<(), Error> {
        let view = self.refresh(apis).await?;
        let catalog = self.target.catalog();
        if !self.leading() {
            self.led.store(false, Ordering::Release);
            if !self.follow_peers {
                catalog.set_draining(HashSet::new());
            }
            return Ok(());
        }
        if !self.led.swap(true, Ordering::AcqRel) {
            self.target.inherit_marks();
        }
        if view.paused {
            catalog.set_draining(HashSet::new());
            self.drain_grace(HashSet::new(), 0);
            return Ok(());
        }
        let Some(want) = *orders.borrow_and_update() else {
            return Ok(());
        };
        if !catalog.synced() {
            return Ok(());
        }
        let plan = self.drain_and_mark(apis, want, view.replicas).await?;
        let replicas = self.target.clamp(plan.replicas);
        if view.replicas == Some(replicas) {
            return Ok(());
        }
        let mut newer = orders.clone();
        let mut leader = self.leading.clone();
        let superseded = async move {
            tokio::select! {
                _ = newer.changed() => {}
                _ = leadership_changed(&mut leader) => {}
            }
        };
        let to = i32::try_from(replicas).unwrap_or(i32::MAX);
        let from = view
            .replicas
            .map_or(0, |r| i32::try_from(r).unwrap_or(i32::MAX));
        if !self.leading() {
            return Ok(()); // the Lease lapsed while planning: write nothing
        }
        let result = writer.write(to, superseded).await;
        self.written(apis, &view, from, result).await
    }

    /// Plans towards `want`, drains and undrains in the table, and marks the pods to remove
    /// with the lowest deletion cost (once each). Returns the plan.
    async fn drain_and_mark(
        &self,
        apis: &Apis,
        want: super::Order,
        spec_replicas: Option<u32>,
    ) -> Result<drain::Plan, Error> {
        let catalog = self.target.catalog();
        let load = catalog.table().load_snapshot(std::time::Instant::now());
        let (eps, draining) = catalog.snapshot();
        self.target.keep_annotations_of(&eps);
        let pods = super::observations(&eps, &draining, spec_replicas, &load);
        let plan = drain::plan(&pods, want.replicas, want.serving, self.target.remove_below);
        let addr_of = |id: &u64| eps.iter().find(|e| pod_id(e) == *id);
        let mut next = draining;
        next.extend(plan.drain.iter().filter_map(addr_of).map(|e| e.address));
        for e in plan.undrain.iter().filter_map(addr_of) {
            next.remove(&e.address);
        }
        let stuck = plan.replicas.saturating_sub(want.replicas);
        self.drain_grace(next.clone(), stuck);
        catalog.set_draining(next);
        let victims: HashSet<&str> = plan
            .remove
            .iter()
            .filter_map(addr_of)
            .filter_map(|e| e.pod.as_deref())
            .collect();
        for pod in &victims {
            self.annotate(apis, pod).await?;
        }
        // A mark that no longer names a victim: its pod is back in service, or the scale-down
        // was superseded. Left in place, a later `kubectl scale` would delete that pod first.
        let serving = eps.iter().filter(|e| e.condition == Condition::Ready);
        let stale: Vec<&str> = serving
            .filter_map(|e| e.pod.as_deref())
            .filter(|p| !victims.contains(p) && self.target.is_marked(p))
            .collect();
        for pod in stale {
            self.unmark(apis, pod).await?;
        }
        Ok(plan)
    }

    /// Closes the connections of the `stuck` overdue ones among the `draining` pods, if a drain
    /// grace is set.
    fn drain_grace(&self, draining: HashSet<std::net::SocketAddr>, stuck: u32) {
        if let Some(grace) = &self.target.grace {
            let load = self
                .target
                .catalog()
                .table()
                .load_snapshot(std::time::Instant::now());
            let now = tokio::time::Instant::now();
            grace.apply(draining, &load, stuck as usize, now);
        }
    }

    /// Records the outcome of a scale write: the new count, an Event.
    async fn written(
        &self,
        apis: &Apis,
        view: &View,
        from: i32,
        result: Result<Outcome, Error>,
    ) -> Result<(), Error> {
        let subject = Subject {
            namespace: self.deployment.namespace.clone(),
            name: self.deployment.name.clone(),
            uid: view.uid.clone(),
        };
        let event = match &result {
            Ok(Outcome::Written(n)) => {
                self.target.failure_is_new(None);
                info!(deployment = %self.deployment.name, from, to = n, "scaled");
                self.target.writes.fetch_add(1, Ordering::AcqRel);
                self.target
                    .set_view(|s| s.replicas = u32::try_from(*n).ok());
                let message = events::scaled_message(from, *n, "tidegate scaler decision");
                events::event(&subject, events::REASON_SCALED, message, false)
            }
            Ok(Outcome::Superseded) => return Ok(()),
            Err(e) if !self.target.failure_is_new(Some(e.to_string())) => return result.map(drop),
            Err(e) => {
                let message = format!("Scaling from {from} replicas failed: {e}");
                events::event(&subject, events::REASON_SCALE_FAILED, message, true)
            }
        };
        if let Err(e) = events::record(&apis.events, &event, self.timeout).await {
            self.count(&e);
        }
        result.map(drop)
    }

    /// Sets the lowest deletion cost on `pod`, once per pod.
    async fn annotate(&self, apis: &Apis, pod: &str) -> Result<(), Error> {
        if !self.target.first_annotation(pod) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": { "annotations": { DELETION_COST_ANNOTATION: VICTIM_DELETION_COST } }
        });
        let pp = PatchParams::default();
        let patch = Patch::Merge(&patch);
        let call = apis.pods.patch(pod, &pp, &patch);
        if let Err(e) = within(self.timeout, "annotate pod", call).await {
            self.target.forget_mark(pod);
            self.count(&e);
            return Err(e);
        }
        info!(%pod, cost = VICTIM_DELETION_COST, "marked pod for removal");
        Ok(())
    }

    /// Removes the deletion-cost mark from `pod` (a merge patch with `null`).
    async fn unmark(&self, apis: &Apis, pod: &str) -> Result<(), Error> {
        let patch = serde_json::json!({
            "metadata": { "annotations": { DELETION_COST_ANNOTATION: null } }
        });
        let pp = PatchParams::default();
        let patch = Patch::Merge(&patch);
        let call = apis.pods.patch(pod, &pp, &patch);
        match within(self.timeout, "unmark pod", call).await {
            Ok(_) => {
                self.target.forget_mark(pod);
                info!(%pod, "pod back in service: deletion-cost mark removed");
                Ok(())
            }
            // Gone already: nothing left to unmark.
            Err(e) if e.code() == Some(404) => {
                self.target.forget_mark(pod);
                Ok(())
            }
            Err(e) => {
                self.count(&e);
                Err(e)
            }
        }
    }

    fn apis(&self, client: Client) -> Apis {
        let ns = &self.deployment.namespace;
        Apis {
            deployments: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
            events: Api::namespaced(client, ns),
        }
    }
}

/// Completes when leadership changes; never when there is no election (or it has ended).
async fn leadership_changed(leader: &mut Option<watch::Receiver<bool>>) {
    let ended = match leader.as_mut() {
        Some(l) => l.changed().await.is_err(),
        None => true,
    };
    if ended {
        std::future::pending::<()>().await;
    }
}

#[async_trait]
impl BackgroundService for Actuator {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let count = |e: &Error| self.count(e);
        let Some(client) = connect(&self.client, &mut shutdown, count).await else {
            return;
        };
        let apis = self.apis(client);
        let mut writer = Writer::new(
            apis.deployments.clone(),
            &self.deployment.name,
            self.errors.clone(),
        )
        .with_call_timeout(self.timeout);
        let mut orders = self.target.order.subscribe();
        let mut leader = self.leading.clone();
        let mut ticks = tokio::time::interval(RECONCILE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = orders.changed() => {}
                _ = leadership_changed(&mut leader) => {}
                _ = shutdown.changed() => break,
            }
            let step = async {
                let result = self.reconcile(&apis, &mut writer, &mut orders).await;
                self.record_queued(&apis).await;
                result
            };
            let result = tokio::select! {
                r = step => r,
                _ = shutdown.changed() => break,
            };
            if let Err(e) = result {
                // Write errors were counted by the writer; the others where they happened.
                warn!(error = %e, deployment = %self.deployment.name, "scaling step failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
