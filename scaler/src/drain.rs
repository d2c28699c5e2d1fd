//! Drain-first actuation (`docs/architecture.md`, "Scale-down removes the emptiest pods"): a
//! policy asks for N replicas of which S serve; the actuator stops routing to the emptiest pods
//! instead of deleting them (they drain, or stay empty as standby capacity), gives that capacity
//! back instantly when demand returns, and lowers `spec.replicas` only for pods that are empty —
//! with their `pod-deletion-cost` set lowest so the ReplicaSet removes exactly those.
//!
//! Pure: [`plan`] looks at the pods and returns what to do; the live loop and the simulator
//! carry it out.

use crate::policy::{PodObservation, PodPhase};

/// What the actuator should do this tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New `spec.replicas`.
    pub replicas: u32,
    /// Pods to stop routing new connections to (emptiest first).
    pub drain: Vec<u64>,
    /// Draining pods to route to again (fullest first: empty standby pods stay empty).
    pub undrain: Vec<u64>,
    /// Empty draining pods to remove: annotate with the lowest deletion cost, then patch.
    pub remove: Vec<u64>,
}

/// Plans drain-first actuation towards `replicas` pods of which `serving` take new connections.
///
/// `pods` are the Deployment's non-terminating pods. Ready pods beyond `serving` are drained,
/// emptiest first; draining pods are routed to again, fullest first, when more must serve, so
/// that empty standby pods stay empty (and removable) as long as possible. Beyond `replicas`, booting pods are cancelled first (the ReplicaSet deletes Pending
/// pods first anyway), then draining pods holding at most `remove_below` connections are removed
/// — only while nothing boots, since the ReplicaSet would pick a booting pod over them.
pub fn plan(pods: &[PodObservation], replicas: u32, serving: u32, remove_below: u32) -> Plan {
    let conns = |p: &PodObservation| p.connections.unwrap_or(0);
    let booting = pods.iter().filter(|p| p.phase == PodPhase::Booting).count() as u32;
    let mut active: Vec<&PodObservation> = pods
        .iter()
        .filter(|p| p.phase != PodPhase::Draining && p.phase != PodPhase::Booting)
        .collect();
    let mut draining: Vec<&PodObservation> = pods
        .iter()
        .filter(|p| p.phase == PodPhase::Draining)
        .collect();
    let mut out = Plan::default();
    let serving = serving.min(replicas) as usize;
    if active.len() < serving {
        draining.sort_by_key(|p| std::cmp::Reverse(conns(p)));
        let back = (serving - active.len()).min(draining.len());
        out.undrain.extend(draining.iter().take(back).map(|p| p.id));
        active.extend(draining.drain(..back));
    } else if active.len() > serving {
        active.sort_by_key(|p| conns(p));
        let excess = active.len() - serving;
        out.drain.extend(active.iter().take(excess).map(|p| p.id));
        draining.extend(active.drain(..excess));
    }
    let total = active.len() as u32 + draining.len() as u32 + booting;
    let mut keep_booting = booting;
    if replicas > total {
        keep_booting += replicas - total;
    } else if replicas < total {
        let mut excess = total - replicas;
        let cancel = excess.min(booting);
        keep_booting -= cancel;
        excess -= cancel;
        if booting == 0 {
            draining.sort_by_key(|p| conns(p));
            let removable = draining.iter().take_while(|p| conns(p) <= remove_below);
            out.remove
                .extend(removable.take(excess as usize).map(|p| p.id));
        }
    }
    out.replicas =
        active.len() as u32 + draining.len() as u32 - out.remove.len() as u32 + keep_booting;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: u64, phase: PodPhase, c: u32) -> PodObservation {
        PodObservation {
            id,
            phase,
            connections: Some(c),
        }
    }

    #[test]
    fn scale_down_drains_the_emptiest_and_keeps_them_counted() {
        let pods = [
            pod(1, PodPhase::Ready, 500),
            pod(2, PodPhase::Ready, 100),
            pod(3, PodPhase::Ready, 300),
        ];
        let p = plan(&pods, 2, 2, 0);
        assert_eq!(p.drain, vec![2]);
        assert_eq!(p.replicas, 3, "the draining pod stays until empty");
        assert!(p.remove.is_empty());
    }

    #[test]
    fn empty_draining_pods_are_removed() {
        let pods = [
            pod(1, PodPhase::Ready, 500),
            pod(2, PodPhase::Draining, 0),
            pod(3, PodPhase::Draining, 4),
        ];
        let p = plan(&pods, 1, 1, 0);
        assert_eq!(p.remove, vec![2]);
        assert_eq!(p.replicas, 2);
        assert_eq!(plan(&pods, 1, 1, 5).remove, vec![2, 3]);
    }

    #[test]
    fn standby_pods_are_kept_out_of_routing_but_not_removed() {
        let pods = [
            pod(1, PodPhase::Ready, 800),
            pod(2, PodPhase::Ready, 0),
            pod(3, PodPhase::Ready, 0),
        ];
        let p = plan(&pods, 3, 1, 0);
        assert_eq!(p.drain.len(), 2);
        assert!(!p.drain.contains(&1));
        assert_eq!(p.replicas, 3);
        assert!(p.remove.is_empty());
    }

    #[test]
    fn scale_up_undrains_before_ordering_new_pods() {
        let pods = [
            pod(1, PodPhase::Ready, 900),
            pod(2, PodPhase::Draining, 50),
            pod(3, PodPhase::Draining, 400),
        ];
        let p = plan(&pods, 3, 2, 0);
        assert_eq!(
            p.undrain,
            vec![3],
            "the fullest first: emptier ones stay removable"
        );
        assert_eq!(p.replicas, 3);
        let p = plan(&pods, 5, 5, 0);
        assert_eq!(p.undrain.len(), 2);
        assert_eq!(p.replicas, 5);
    }

    #[test]
    fn booting_pods_are_cancelled_first_and_block_removals() {
        let pods = [
            pod(1, PodPhase::Ready, 500),
            pod(2, PodPhase::Booting, 0),
            pod(3, PodPhase::Draining, 0),
        ];
        let p = plan(&pods, 1, 1, 0);
        assert!(p.drain.is_empty());
        assert_eq!(
            p.replicas, 2,
            "booting cancelled; empty draining pod kept while one boots"
        );
        assert!(p.remove.is_empty());
    }
}
