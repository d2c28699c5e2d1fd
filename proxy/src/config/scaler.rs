//! `scaler:` — the embedded autoscaler. The replica bounds and boot time sit at the top of the
//! section; every other constant of the policy is under `policy:` with its own default.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidegate_scaler::config::TidegatePolicyConfig;

use super::Error;

/// The scaler section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalerSection {
    /// Fewest serving replicas. Default 2.
    pub min_replicas: u32,
    /// Most replicas. Default 50.
    pub max_replicas: u32,
    /// Expected time from asking for a replica to it taking connections; the forecast looks
    /// this far ahead (times `policy.horizon_factor`). Default `45s`.
    #[serde(with = "tidegate_common::duration")]
    pub boot_time: Duration,
    /// Decide and log, but change nothing. Default false.
    pub dry_run: bool,
    /// The Deployment to scale (with `backends.kubernetes`). Default: none (local mode).
    pub deployment: Option<super::DeploymentRef>,
    /// The policy's other constants (forecast smoothing, surge mode, scale-down pacing, …);
    /// see `scaler/README.md`. `capacity` comes from `max_connections_per_backend`.
    pub policy: TidegatePolicyConfig,
}

impl Default for ScalerSection {
    fn default() -> Self {
        Self {
            min_replicas: 2,
            max_replicas: 50,
            boot_time: Duration::from_secs(45),
            dry_run: false,
            deployment: None,
            policy: TidegatePolicyConfig::default(),
        }
    }
}

impl ScalerSection {
    /// The policy config with the section's bounds and the proxy's per-backend cap applied.
    pub fn policy_config(&self, capacity: u32) -> TidegatePolicyConfig {
        TidegatePolicyConfig {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            boot_time: self.boot_time,
            capacity,
            ..self.policy.clone()
        }
    }

    pub(super) fn validate(&self, capacity: u32) -> Result<(), Error> {
        let defaults = TidegatePolicyConfig::default();
        let moved = [
            (
                "scaler.policy.min_replicas",
                self.policy.min_replicas != defaults.min_replicas,
                "scaler.min_replicas",
            ),
            (
                "scaler.policy.max_replicas",
                self.policy.max_replicas != defaults.max_replicas,
                "scaler.max_replicas",
            ),
            (
                "scaler.policy.boot_time",
                self.policy.boot_time != defaults.boot_time,
                "scaler.boot_time",
            ),
            (
                "scaler.policy.capacity",
                self.policy.capacity != defaults.capacity,
                "max_connections_per_backend",
            ),
        ];
        if let Some((field, _, instead)) = moved.into_iter().find(|m| m.1) {
            return Err(Error::Invalid {
                field,
                expected: format!("no value here: set {instead} instead"),
            });
        }
        if self.min_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(Error::Invalid {
                field: "scaler.min_replicas",
                expected: format!("1 ≤ min_replicas ≤ max_replicas ({})", self.max_replicas),
            });
        }
        self.policy_config(capacity)
            .validate()
            .map_err(|e| Error::Invalid {
                field: "scaler.policy",
                expected: e.to_string(),
            })
    }
}
