//! The simulated world's settings (`docs/architecture.md`, section "The simulator") and how a
//! policy is plugged in.

use std::time::Duration;

use serde::Serialize;

use super::trace::Trace;
use crate::Error;
use crate::policy::Policy;
use crate::rng::Rng;

/// The simulator's time step.
pub const STEP: Duration = Duration::from_millis(100);
/// Smallest accepted boot delay.
pub const MIN_BOOT_DELAY: Duration = Duration::from_secs(1);
/// Largest accepted boot delay.
pub const MAX_BOOT_DELAY: Duration = Duration::from_secs(600);

/// Which input pipeline feeds the policies that follow `--pipeline` (the Seed2 family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    /// The proxy's exact counts at the policy's own period.
    Direct,
    /// Per-pod gauges scraped every S with a random phase per pod.
    Prom,
}

/// What a policy sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Exact per-pod counts.
    Direct,
    /// Scraped per-pod gauges (missing until a pod's first scrape).
    Prom,
    /// Exact per-pod counts plus the edge's queue and refusals (tidegate).
    Edge,
}

/// How a policy's decision reaches the Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actuation {
    /// Patch `spec.replicas`; the ReplicaSet picks victims.
    Plain,
    /// Drain the emptiest pods first, remove them once they hold at most `remove_below`
    /// connections ([`crate::drain`]).
    DrainFirst {
        /// Connections at or below which a draining pod is removed.
        remove_below: u32,
    },
}

/// What the edge does with a connection when no pod has room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Hold it up to the hold limit, then refuse.
    Hold,
    /// Refuse at once.
    Reject,
}

/// How a deleted pod ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Termination {
    /// Killed at once.
    Hard,
    /// Out of the endpoints, killed after the grace period.
    Grace,
    /// Out of the endpoints, removed when its last connection ends.
    Drain,
}

/// Which pods the ReplicaSet deletes on scale-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Victims {
    /// As the policy's actuator sets it: annotations for drain-first policies, default otherwise.
    Policy,
    /// ReplicaSet default for everyone: NotReady first, then newest.
    Replicaset,
    /// pod-deletion-cost = live connections for everyone (emptiest first).
    DeletionCost,
}

/// How disconnected or refused clients come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Reconnect {
    /// Full jitter: sleep U(0, min(30 s, 1 s·2^n)).
    Jitter,
    /// Thundering herd: everyone retries after exactly 1 s.
    Herd,
}

/// How long a session lasts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    /// Memoryless, with this mean (the default world: 15 min).
    Exponential {
        /// Mean lifetime.
        mean: Duration,
    },
    /// Lognormal: `ln(lifetime)` is normal around `ln(median)` with standard deviation `sigma`
    /// (the sensitivity case: median 5 min, σ 1.2 — many short sessions and a long tail).
    Lognormal {
        /// Median lifetime.
        median: Duration,
        /// Standard deviation of the log.
        sigma: f64,
    },
}

impl Lifetime {
    /// Mean lifetime in seconds.
    pub fn mean_secs(&self) -> f64 {
        match *self {
            Lifetime::Exponential { mean } => mean.as_secs_f64(),
            Lifetime::Lognormal { median, sigma } => {
                median.as_secs_f64() * (sigma * sigma / 2.0).exp()
            }
        }
    }

    /// True for exponential lifetimes (sessions can be ended by counting, without clocks).
    pub fn is_memoryless(&self) -> bool {
        matches!(self, Lifetime::Exponential { .. })
    }

    /// A new session's lifetime (s).
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            Lifetime::Exponential { mean } => -mean.as_secs_f64() * (1.0 - rng.f64()).ln(),
            Lifetime::Lognormal { median, sigma } => {
                median.as_secs_f64() * (sigma * rng.normal()).exp()
            }
        }
    }

    /// What is left of a session found in progress in steady state (s): a uniform fraction
    /// of a length-biased lifetime (for the lognormal, `ln` shifts by σ²).
    pub fn residual(&self, rng: &mut Rng) -> f64 {
        match *self {
            Lifetime::Exponential { .. } => self.sample(rng),
            Lifetime::Lognormal { median, sigma } => {
                let biased = median.as_secs_f64() * (sigma * sigma + sigma * rng.normal()).exp();
                biased * rng.f64()
            }
        }
    }
}

/// The world every policy runs in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorldConfig {
    /// Hard per-pod capacity C (connections).
    pub capacity: u32,
    /// Target occupancy T of the baselines (connections per pod).
    pub target: u32,
    /// Nominal boot delay B.
    pub boot_delay: Duration,
    /// Boot delay jitter: uniform ±this fraction.
    pub boot_jitter: f64,
    /// Replica bounds.
    pub min_replicas: u32,
    /// Replica bounds.
    pub max_replicas: u32,
    /// Session lifetime L (default: exponential, mean 15 min).
    pub lifetime: Lifetime,
    /// Hold or reject when no pod has room.
    pub placement: Placement,
    /// Longest hold Q.
    pub hold_limit: Duration,
    /// How deleted pods end.
    pub termination: Termination,
    /// Grace period for [`Termination::Grace`].
    pub grace: Duration,
    /// Victim selection.
    pub victims: Victims,
    /// Reconnect behaviour.
    pub reconnect: Reconnect,
    /// Pipeline of the Seed2 family.
    pub pipeline: Pipeline,
    /// Prometheus scrape interval S.
    pub scrape_interval: Duration,
    /// A replica patch takes effect after U(min, max).
    pub patch_delay: (Duration, Duration),
    /// Every run first plays up to this much of its trace's start backwards, unmeasured, so
    /// that each policy starts in its own steady state ([`Trace::with_preroll`]).
    pub preroll: Duration,
    /// tidegate's policy settings (`None`: the defaults); capacity, replica bounds and boot
    /// time always come from this world.
    pub tidegate: Option<crate::config::TidegatePolicyConfig>,
    /// Occupancy Oracle-causal sizes for (1: none of the capacity held back, as the goals
    /// define it; the suite's frontier runs it lower).
    pub causal_occupancy: f64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            capacity: 1000,
            target: 700,
            boot_delay: Duration::from_secs(45),
            boot_jitter: 0.2,
            min_replicas: 2,
            max_replicas: 200,
            lifetime: Lifetime::Exponential {
                mean: Duration::from_secs(15 * 60),
            },
            placement: Placement::Hold,
            hold_limit: Duration::from_secs(5),
            termination: Termination::Grace,
            grace: Duration::from_secs(30),
            victims: Victims::Policy,
            reconnect: Reconnect::Jitter,
            pipeline: Pipeline::Prom,
            scrape_interval: Duration::from_secs(30),
            patch_delay: (Duration::from_millis(50), Duration::from_millis(500)),
            preroll: Duration::from_secs(1200),
            tidegate: None,
            causal_occupancy: 1.0,
        }
    }
}

impl WorldConfig {
    /// This world with a trace's population overrides (lifetimes, reconnect behaviour).
    pub fn for_trace(&self, trace: &Trace) -> WorldConfig {
        WorldConfig {
            lifetime: trace.lifetime.unwrap_or(self.lifetime),
            reconnect: trace.reconnect.unwrap_or(self.reconnect),
            ..self.clone()
        }
    }

    /// Checks ranges; errors name the CLI flag.
    pub fn validate(&self) -> Result<(), Error> {
        if !(MIN_BOOT_DELAY..=MAX_BOOT_DELAY).contains(&self.boot_delay) {
            return Err(Error::InvalidConfig {
                field: "--boot-delay",
                reason: format!(
                    "{:?} is outside [{:?}, {:?}]",
                    self.boot_delay, MIN_BOOT_DELAY, MAX_BOOT_DELAY
                ),
            });
        }
        if self.scrape_interval < STEP || self.scrape_interval > Duration::from_secs(600) {
            return Err(Error::InvalidConfig {
                field: "--scrape-interval",
                reason: format!("{:?} is outside [100ms, 10m]", self.scrape_interval),
            });
        }
        if self.capacity == 0 || self.target == 0 || self.target > self.capacity {
            return Err(Error::InvalidConfig {
                field: "capacity",
                reason: "need 0 < target ≤ capacity".into(),
            });
        }
        if self.min_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(Error::InvalidConfig {
                field: "min_replicas",
                reason: "need 1 ≤ min ≤ max".into(),
            });
        }
        Ok(())
    }
}

/// A policy plugged into the world: the policy and how it sees and acts.
pub struct PolicySetup {
    /// The policy.
    pub policy: Box<dyn Policy>,
    /// What it sees.
    pub feed: Feed,
    /// How its decisions are carried out.
    pub actuation: Actuation,
    /// Pods report NotReady while at capacity (the seed's workaround).
    pub not_ready_at_capacity: bool,
    /// Offset of its first decision (HPA: random sync phase).
    pub phase: Duration,
    /// Pods at t = 0: the policy's own steady state for D(0) (`None`: ceil(D(0)/T), the
    /// baselines' steady state).
    pub initial_replicas: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_delay_out_of_range_names_the_flag() {
        let w = WorldConfig {
            boot_delay: Duration::from_secs(3600),
            ..Default::default()
        };
        let err = w.validate().unwrap_err().to_string();
        assert!(err.contains("--boot-delay"), "{err}");
        WorldConfig::default().validate().unwrap();
    }
}
