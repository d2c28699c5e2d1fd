//! The seam every scaling policy sits behind: an [`Observation`] in, a [`Decision`] out, time
//! passed in.
//!
//! The live scaler loop and the simulator call the same [`Policy`]: [`Policy::observe`] every
//! [`Policy::sample_period`] (the live loop does it once per second) and [`Policy::decide`] every
//! [`Policy::period`]. Policies keep whatever history they need themselves; `decide` must not
//! allocate on its hot path (it is benched for 200 pods).

use std::fmt;
use std::time::Duration;

/// Where a pod is in its life, as the policy's input source reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    /// Created but not serving yet (Kubernetes `Pending`, or Running and not yet Ready).
    Booting,
    /// Ready and taking new connections.
    Ready,
    /// Running but reporting NotReady (e.g. the seed's "NotReady when full").
    NotReady,
    /// Ready, but the edge sends it no new connections: it is being emptied before removal.
    Draining,
}

/// One pod as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodObservation {
    /// Stable id of the pod (its name, hashed, in the live loop).
    pub id: u64,
    /// Life-cycle phase.
    pub phase: PodPhase,
    /// Live connections, or `None` when the source has no sample for this pod yet ("missing").
    pub connections: Option<u32>,
}

impl PodObservation {
    /// A ready pod with `connections` live connections.
    pub fn ready(id: u64, connections: u32) -> Self {
        Self {
            id,
            phase: PodPhase::Ready,
            connections: Some(connections),
        }
    }
}

/// What a policy sees at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The pods of the Deployment that are not terminating.
    pub pods: &'a [PodObservation],
    /// The replica count currently asked of the Deployment (`spec.replicas`).
    pub desired: u32,
    /// Connections held in the edge's wait queue right now (edge-only signal; 0 for others).
    pub queued: u32,
    /// Connection attempts the edge refused since the previous observation (edge-only signal).
    pub refused: u32,
}

impl Observation<'_> {
    /// Pods in [`PodPhase::Ready`] or [`PodPhase::NotReady`] or [`PodPhase::Draining`] (running).
    pub fn running(&self) -> u32 {
        self.pods
            .iter()
            .filter(|p| p.phase != PodPhase::Booting)
            .count() as u32
    }

    /// Pods that are Ready (taking connections, not draining).
    pub fn ready(&self) -> u32 {
        self.pods
            .iter()
            .filter(|p| p.phase == PodPhase::Ready)
            .count() as u32
    }

    /// Pods still booting.
    pub fn booting(&self) -> u32 {
        self.pods
            .iter()
            .filter(|p| p.phase == PodPhase::Booting)
            .count() as u32
    }

    /// Pods the edge is draining.
    pub fn draining(&self) -> u32 {
        self.pods
            .iter()
            .filter(|p| p.phase == PodPhase::Draining)
            .count() as u32
    }

    /// Sum of the known per-pod connection counts (missing pods count 0).
    pub fn connections(&self) -> u64 {
        self.pods
            .iter()
            .filter_map(|p| p.connections)
            .map(u64::from)
            .sum()
    }
}

/// A policy's output: how many serving replicas it wants, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Desired replicas (for drain-first actuation: not counting pods still being drained).
    pub replicas: u32,
    /// How many of `replicas` the edge should route new connections to; the others are kept
    /// empty as standby capacity (drain-first actuation only). `None`: all of them.
    pub serving: Option<u32>,
    /// Why, printable as one short line (see [`Reason`]'s `Display`).
    pub reason: Reason,
    /// The forecast the decision was sized on, for predictive policies.
    pub forecast: Option<Forecast>,
}

/// A forecast of total connections at a horizon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    /// Predicted total connections.
    pub connections: f64,
    /// How far ahead of `now` the prediction is.
    pub horizon: Duration,
}

/// Direction of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// More replicas than now.
    ScaleUp,
    /// Fewer replicas than now.
    ScaleDown,
    /// Same as now.
    Hold,
}

impl Action {
    /// The direction from `current` replicas to `wanted`.
    pub fn toward<T: Ord>(wanted: T, current: T) -> Self {
        match wanted.cmp(&current) {
            std::cmp::Ordering::Greater => Action::ScaleUp,
            std::cmp::Ordering::Less => Action::ScaleDown,
            std::cmp::Ordering::Equal => Action::Hold,
        }
    }
}

/// Why a decision came out as it did; formats as e.g.
/// `scale_up: forecast 3120 conns at +30s > 0.7×1000×4`.
///
/// Plain data (no allocation); the status page renders it with `to_string()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reason {
    /// Direction.
    pub action: Action,
    /// What the load figure is: `"forecast"`, `"observed"`, `"stable"`, `"panic"`, `"avg"`, ….
    pub basis: &'static str,
    /// The load the replicas were sized for (connections; per pod for HPA's `avg`).
    pub load: f64,
    /// How far ahead the load is (zero for observations).
    pub horizon: Duration,
    /// Target occupancy as a fraction of capacity.
    pub occupancy: f64,
    /// Per-pod capacity (connections).
    pub capacity: u32,
    /// Replicas the load was compared against (the current desired count).
    pub current: u32,
    /// A limiter or mode that shaped the result, e.g. `"surge"`, `"stabilized"`, `"tolerance"`.
    pub note: &'static str,
}

impl Reason {
    /// A reason with no load figure (e.g. "no metrics yet").
    pub fn hold(current: u32, note: &'static str) -> Self {
        Reason {
            action: Action::Hold,
            basis: "none",
            load: 0.0,
            horizon: Duration::ZERO,
            occupancy: 0.0,
            capacity: 0,
            current,
            note,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::ScaleUp => "scale_up",
            Action::ScaleDown => "scale_down",
            Action::Hold => "hold",
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.basis == "none" {
            return write!(
                f,
                "{}: {} ({} replicas)",
                self.action, self.note, self.current
            );
        }
        let room = self.occupancy * f64::from(self.capacity) * f64::from(self.current);
        let cmp = if self.load > room { '>' } else { '≤' };
        write!(f, "{}: {} {:.0} conns", self.action, self.basis, self.load)?;
        if !self.horizon.is_zero() {
            write!(f, " at +{}s", self.horizon.as_secs())?;
        }
        write!(
            f,
            " {cmp} {}×{}×{}",
            self.occupancy, self.capacity, self.current
        )?;
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        Ok(())
    }
}

/// A scaling policy: tidegate's own, or one of the baselines it is judged against.
pub trait Policy: Send {
    /// Short stable id, e.g. `"tidegate"` or `"HPA-prom"`.
    fn name(&self) -> &str;

    /// How often [`Policy::decide`] is called.
    fn period(&self) -> Duration;

    /// How often [`Policy::observe`] is called; defaults to [`Policy::period`].
    fn sample_period(&self) -> Duration {
        self.period()
    }

    /// Records a sample between decisions. The default does nothing.
    fn observe(&mut self, _now: Duration, _obs: &Observation<'_>) {}

    /// Decides the desired replica count at `now`.
    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision;
}

/// Sizes `load` connections at `per_pod` connections per pod: `ceil(load / per_pod)`.
pub fn pods_for(load: f64, per_pod: f64) -> u32 {
    if load <= 0.0 || per_pod <= 0.0 {
        return 0;
    }
    let pods = (load / per_pod).ceil();
    if pods >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        pods as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_formats_like_the_status_page_expects() {
        let r = Reason {
            action: Action::ScaleUp,
            basis: "forecast",
            load: 3120.4,
            horizon: Duration::from_secs(30),
            occupancy: 0.7,
            capacity: 1000,
            current: 4,
            note: "",
        };
        assert_eq!(
            r.to_string(),
            "scale_up: forecast 3120 conns at +30s > 0.7×1000×4"
        );
        assert_eq!(
            Reason::hold(3, "no metrics").to_string(),
            "hold: no metrics (3 replicas)"
        );
    }

    #[test]
    fn pods_for_rounds_up() {
        assert_eq!(pods_for(700.0, 700.0), 1);
        assert_eq!(pods_for(701.0, 700.0), 2);
        assert_eq!(pods_for(0.0, 700.0), 0);
    }
}
