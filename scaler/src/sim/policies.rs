//! The policies the simulator compares, by id, and how each is plugged into the world.

use std::time::Duration;

use super::setup::{Actuation, Feed, Pipeline, PolicySetup, WorldConfig};
use super::trace::Trace;
use crate::Error;
use crate::baselines::hpa::{Hpa, HpaConfig};
use crate::baselines::kpa::{Kpa, KpaConfig};
use crate::baselines::oracle::{OracleCausal, OracleFeasible};
use crate::baselines::seed2::{Seed2, Seed2Config, Variant};
use crate::config::TidegatePolicyConfig;
use crate::rng::Rng;
use crate::tidegate::TidegatePolicy;

/// Every policy of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyId {
    /// tidegate's own policy (edge feed, drain-first).
    Tidegate,
    /// HPA v2 fed by Prometheus.
    HpaProm,
    /// HPA v2 fed by exact counts.
    HpaDirect,
    /// Knative KPA.
    Kpa,
    /// Seed predictor, variant (a).
    Seed2A,
    /// Seed2-a with pods NotReady at capacity.
    Seed2ANr,
    /// Seed predictor, variant (b).
    Seed2B,
    /// Seed2-b with pods NotReady at capacity.
    Seed2BNr,
    /// Seed2-a with a linear fit (ablation).
    Seed2Lin,
    /// Knows D; orders a worst-case boot ahead; removes only empty pods (LB2).
    OracleFeasible,
    /// Knows D(now) only; acts at once; holds for a worst-case boot; removes only empty pods.
    OracleCausal,
    /// ceil(D/C), instant (LB1); analytic, not simulated.
    OracleFluid,
}

impl PolicyId {
    /// All policies, in report order.
    pub const ALL: [PolicyId; 12] = [
        PolicyId::Tidegate,
        PolicyId::HpaProm,
        PolicyId::HpaDirect,
        PolicyId::Kpa,
        PolicyId::Seed2A,
        PolicyId::Seed2ANr,
        PolicyId::Seed2B,
        PolicyId::Seed2BNr,
        PolicyId::Seed2Lin,
        PolicyId::OracleFeasible,
        PolicyId::OracleCausal,
        PolicyId::OracleFluid,
    ];

    /// The id used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PolicyId::Tidegate => "tidegate",
            PolicyId::HpaProm => "HPA-prom",
            PolicyId::HpaDirect => "HPA-direct",
            PolicyId::Kpa => "KPA",
            PolicyId::Seed2A => "Seed2-a",
            PolicyId::Seed2ANr => "Seed2-a-nr",
            PolicyId::Seed2B => "Seed2-b",
            PolicyId::Seed2BNr => "Seed2-b-nr",
            PolicyId::Seed2Lin => "Seed2-lin",
            PolicyId::OracleFeasible => "Oracle-feasible",
            PolicyId::OracleCausal => "Oracle-causal",
            PolicyId::OracleFluid => "Oracle-fluid",
        }
    }

    /// True for the policies whose feed follows `--pipeline`.
    pub fn follows_pipeline(self) -> bool {
        matches!(
            self,
            PolicyId::Seed2A
                | PolicyId::Seed2ANr
                | PolicyId::Seed2B
                | PolicyId::Seed2BNr
                | PolicyId::Seed2Lin
        )
    }

    /// Parses `all` or a comma-separated list of ids (case-insensitive).
    pub fn parse_list(text: &str) -> Result<Vec<PolicyId>, Error> {
        if text.trim().eq_ignore_ascii_case("all") {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = Self::ALL
                .iter()
                .copied()
                .find(|p| p.name().eq_ignore_ascii_case(name));
            match id {
                Some(id) if !out.contains(&id) => out.push(id),
                Some(_) => {}
                None => {
                    let known = Self::ALL
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(Error::UnknownPolicy {
                        name: name.to_string(),
                        known,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Builds the policy for a world and trace (`None` for the analytic Oracle-fluid).
    pub fn build(self, world: &WorldConfig, trace: &Trace, seed: u64) -> Option<PolicySetup> {
        let (min, max) = (world.min_replicas, world.max_replicas);
        let target = f64::from(world.target);
        let seed_feed = match world.pipeline {
            Pipeline::Direct => Feed::Direct,
            Pipeline::Prom => Feed::Prom,
        };
        let plain = |policy: Box<dyn crate::Policy>, feed| PolicySetup {
            policy,
            feed,
            actuation: Actuation::Plain,
            not_ready_at_capacity: false,
            phase: Duration::ZERO,
            initial_replicas: None,
        };
        let d0 = trace.at(0.0).0;
        let worst_boot = world.boot_delay.mul_f64(1.0 + world.boot_jitter);
        let lookahead = worst_boot + world.patch_delay.1 + Duration::from_secs(1);
        let seed2 = |name, variant, degree| Seed2Config {
            name,
            variant,
            degree,
            boot_estimate: world.boot_delay,
            target,
            min_replicas: min,
            max_replicas: max,
            ..Seed2Config::default()
        };
        let hpa = |name| {
            let cfg = HpaConfig {
                name,
                target,
                min_replicas: min,
                max_replicas: max,
                ..HpaConfig::default()
            };
            let mut rng = Rng::new(seed, 0x4A);
            let phase = Duration::from_secs_f64(rng.uniform(0.0, cfg.sync_period.as_secs_f64()));
            (Box::new(Hpa::new(cfg)), phase)
        };
        Some(match self {
            PolicyId::Tidegate => {
                let cfg = TidegatePolicyConfig {
                    capacity: world.capacity,
                    boot_time: world.boot_delay,
                    min_replicas: min,
                    max_replicas: max,
                    ..world.tidegate.clone().unwrap_or_default()
                };
                let remove_below = cfg.drain_remove_below;
                PolicySetup {
                    initial_replicas: Some(cfg.steady_replicas(d0)),
                    policy: Box::new(TidegatePolicy::new(cfg)),
                    feed: Feed::Edge,
                    actuation: Actuation::DrainFirst { remove_below },
                    not_ready_at_capacity: false,
                    phase: Duration::ZERO,
                }
            }
            PolicyId::HpaProm | PolicyId::HpaDirect => {
                let prom = self == PolicyId::HpaProm;
                let (policy, phase) = hpa(self.name());
                let feed = if prom { Feed::Prom } else { Feed::Direct };
                PolicySetup {
                    phase,
                    ..plain(policy, feed)
                }
            }
            PolicyId::Kpa => {
                let cfg = KpaConfig {
                    target,
                    min_replicas: min,
                    max_replicas: max,
                    ..KpaConfig::default()
                };
                plain(Box::new(Kpa::new(cfg)), Feed::Direct)
            }
            PolicyId::Seed2A => plain(
                Box::new(Seed2::new(seed2("Seed2-a", Variant::A, 2))),
                seed_feed,
            ),
            PolicyId::Seed2B => plain(
                Box::new(Seed2::new(seed2("Seed2-b", Variant::B, 2))),
                seed_feed,
            ),
            PolicyId::Seed2Lin => plain(
                Box::new(Seed2::new(seed2("Seed2-lin", Variant::A, 1))),
                seed_feed,
            ),
            PolicyId::Seed2ANr | PolicyId::Seed2BNr => {
                let (name, v) = if self == PolicyId::Seed2ANr {
                    ("Seed2-a-nr", Variant::A)
                } else {
                    ("Seed2-b-nr", Variant::B)
                };
                let setup = plain(Box::new(Seed2::new(seed2(name, v, 2))), seed_feed);
                PolicySetup {
                    not_ready_at_capacity: true,
                    ..setup
                }
            }
            PolicyId::OracleFeasible => {
                let oracle =
                    OracleFeasible::new(&trace.demand, world.capacity, lookahead, min, max);
                PolicySetup {
                    actuation: Actuation::DrainFirst { remove_below: 0 },
                    initial_replicas: Some(oracle.target(Duration::ZERO)),
                    ..plain(Box::new(oracle), Feed::Direct)
                }
            }
            PolicyId::OracleCausal => {
                let o = world.causal_occupancy;
                let oracle =
                    OracleCausal::new(&trace.demand, world.capacity, o, lookahead, (min, max));
                PolicySetup {
                    actuation: Actuation::DrainFirst { remove_below: 0 },
                    initial_replicas: Some(oracle.target(Duration::ZERO)),
                    ..plain(Box::new(oracle), Feed::Direct)
                }
            }
            PolicyId::OracleFluid => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_list_accepts_all_and_names_unknowns() {
        assert_eq!(PolicyId::parse_list("all").unwrap().len(), 12);
        assert_eq!(
            PolicyId::parse_list("tidegate, hpa-prom").unwrap(),
            vec![PolicyId::Tidegate, PolicyId::HpaProm]
        );
        let err = PolicyId::parse_list("tidegate,vpa")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"vpa\"") && err.contains("KPA"), "{err}");
    }
}
