//! What the scaler actuates, behind one seam: [`ScaleTarget`].
//!
//! - [`deployment`]: a Kubernetes Deployment — drain the emptiest pods, mark the ones to remove
//!   with the lowest `pod-deletion-cost`, then patch `spec.replicas` through the `scale`
//!   subresource (the only module that writes to the Kubernetes API for scaling);
//! - [`local`]: local mode's pool of backend processes on this machine;
//! - [`DryRun`]: any of them, observed but never changed (`scaler.dry_run: true`).
//!
//! Every target carries out a decision the same way: the pure drain plan of
//! `tidegate_scaler::drain` (drain the emptiest, undrain when demand returns, remove only the
//! empty), applied through the [`crate::discovery::Catalog`]'s drain marks. A drained backend
//! kept only for its connections has them closed with 1001 once its drain grace runs out
//! ([`drain_grace`]).

pub mod deployment;
pub mod drain_grace;
pub mod local;

use std::sync::Arc;

use tidegate_common::LoadSnapshot;
use tidegate_scaler::policy::PodObservation;
use tracing::info;

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

/// A target that is observed but never changed: decisions are logged, not carried out.
pub struct DryRun(pub Arc<dyn ScaleTarget>);

impl ScaleTarget for DryRun {
    fn pods(&self, load: &LoadSnapshot) -> Vec<PodObservation> {
        self.0.pods(load)
    }

    fn desired(&self) -> u32 {
        self.0.desired()
    }

    fn set_desired(&self, replicas: u32, serving: u32) {
        info!(replicas, serving, "dry run: not applied");
    }
}
