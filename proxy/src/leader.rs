//! Leadership through a `coordination.k8s.io/v1` Lease: one proxy replica scales, the others
//! count and route.
//!
//! [`Elector::step`] is the whole policy, pure with time passed in. Like client-go, it never
//! compares clocks across machines: a follower measures expiry from when *it* last saw the
//! Lease change (its `resourceVersion`), and the holder stops leading `lease_duration -
//! renew_period` after its last successful renewal — before any follower may take over.
//! Writes use the observed `resourceVersion`, so two candidates racing for an expired Lease get
//! one success and one 409. [`Service`] is the thin loop around it.

use std::time::Duration;

use ::kube::Api;
use ::kube::api::{ObjectMeta, PostParams};
use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, Registry};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{KubeClientConfig, LeaderElection};
use crate::kube::Error;

/// What the Lease looks like, as far as the election cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `spec.holderIdentity` (`None` or empty: released).
    pub holder: Option<String>,
    /// `metadata.resourceVersion`: changes on every write, renewals included.
    pub version: String,
    /// `spec.leaseDurationSeconds` as the holder declared it.
    pub duration: Option<Duration>,
}

/// What to do after looking at the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: write a new `renewTime`.
    Renew,
    /// It was released, or its holder has not renewed for a lease duration: take it.
    TakeOver,
    /// Someone else holds it and renews it: wait.
    Follow,
}

/// The election's memory between steps.
#[derive(Clone, Debug)]
pub struct Elector {
    identity: String,
    lease_duration: Duration,
    renew_period: Duration,
    seen: Option<(String, Instant)>,
    renewed_at: Option<Instant>,
}

impl Elector {
    /// A candidate named `identity`.
    pub fn new(identity: String, lease_duration: Duration, renew_period: Duration) -> Self {
        Self {
            identity,
            lease_duration,
            renew_period,
            seen: None,
            renewed_at: None,
        }
    }

    /// This candidate's name.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Decides what to do at `now` given the Lease as just read (`None`: it does not exist).
    pub fn step(&mut self, now: Instant, lease: Option<&Observed>) -> Action {
        let Some(lease) = lease else {
            self.renewed_at = None;
            return Action::Create;
        };
        let holder = lease.holder.as_deref().filter(|h| !h.is_empty());
        if holder == Some(self.identity.as_str()) {
            return Action::Renew;
        }
        self.renewed_at = None;
        if holder.is_none() {
            return Action::TakeOver;
        }
        match &self.seen {
            Some((version, since)) if *version == lease.version => {
                let duration = lease.duration.unwrap_or(self.lease_duration);
                if now >= *since + duration {
                    Action::TakeOver
                } else {
                    Action::Follow
                }
            }
            _ => {
                self.seen = Some((lease.version.clone(), now));
                Action::Follow
            }
        }
    }

    /// A create, renewal or takeover written at `now` was accepted: we hold the Lease.
    pub fn wrote(&mut self, now: Instant) {
        self.renewed_at = Some(now);
    }

    /// Whether we may act as leader at `now`.
    pub fn leading(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now < d)
    }

    /// When leadership lapses unless renewed.
    pub fn deadline(&self) -> Option<Instant> {
        let margin = self.lease_duration.saturating_sub(self.renew_period);
        self.renewed_at.map(|t| t + margin)
    }

    /// We released the Lease.
    pub fn released(&mut self) {
        self.renewed_at = None;
    }
}

/// Reads what the election needs from a Lease.
pub fn observe(lease: &Lease) -> Observed {
    let spec = lease.spec.as_ref();
    Observed {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        version: lease.metadata.resource_version.clone().unwrap_or_default(),
        duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
    }
}

/// The Lease written for `action` by `identity`, from the one read (`None` for a create).
pub fn desired_lease(
    action: Action,
    identity: &str,
    name: &str,
    duration: Duration,
    current: Option<Lease>,
) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let mut lease = current.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if action != Action::Renew {
        spec.acquire_time = Some(now.clone());
        let transitions = spec.lease_transitions.unwrap_or(0);
        spec.lease_transitions = Some(if action == Action::TakeOver {
            transitions + 1
        } else {
            transitions
        });
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = i32::try_from(duration.as_secs()).ok();
    spec.renew_time = Some(now);
    lease
}

/// The election loop as a pingora background service. Publishes leadership on a watch channel:
/// the scaler and the Deployment actuator act only while it is `true`.
pub struct Service {
    config: LeaderElection,
    client: KubeClientConfig,
    leading: watch::Sender<bool>,
    errors: IntCounterVec,
}

impl Service {
    /// A candidate for the Lease of `config`, with the credentials of `client`; returns the
    /// service and the receiving end of its leadership. Registers
    /// `tidegate_leader_errors_total{kind}` in `registry`.
    pub fn new(
        config: LeaderElection,
        client: KubeClientConfig,
        registry: &Registry,
    ) -> Result<(Self, watch::Receiver<bool>), crate::metrics::Error> {
        let errors = crate::metrics::counter_vec(
            registry,
            "tidegate_leader_errors_total",
            "Errors of leader election (reading or writing the Lease), by kind.",
            &["kind"],
        )?;
        let (leading, rx) = watch::channel(false);
        let service = Self {
            config,
            client,
            leading,
            errors,
        };
        Ok((service, rx))
    }
}

mod run;

#[cfg(test)]
mod tests;
