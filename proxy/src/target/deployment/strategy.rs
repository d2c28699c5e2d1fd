//! What a rollout of the scaled Deployment takes away before its replacements are Ready.
//!
//! tidegate keeps the pods near their target occupancy, so it has little standing headroom: the
//! clients of pods that a rollout removes early reconnect to the pods left and are refused until
//! the replacements boot. `maxUnavailable: 0` (new pods first, an old pod removed only once a new
//! one is Ready) makes a rollout cost no capacity; Kubernetes' default is 25 %, and `Recreate`
//! removes every pod at once. The actuator reads the strategy with the Deployment and says so
//! (`docs/architecture.md`, "Rollouts start new pods first"; `deploy/README.md`, "Rolling
//! updates").

use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Kubernetes' `maxUnavailable` and `maxSurge` when the Deployment gives none.
const DEFAULT_SHARE: &str = "25%";

/// How a rollout of the Deployment removes pods, as read from its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// `spec.replicas`, which percentages are resolved against.
    pub replicas: u32,
    /// Pods a rollout may take out of service at once at those replicas.
    pub unavailable: u32,
    /// The setting that gives it, e.g. `maxUnavailable 25% (the default)` or `strategy Recreate`.
    pub setting: String,
}

impl Rollout {
    /// The rollout `spec` describes, resolved the way the Deployment controller resolves it:
    /// a percentage of `spec.replicas` rounded down for `maxUnavailable` and up for `maxSurge`,
    /// and 1 unavailable when both come to 0.
    pub fn of(spec: &DeploymentSpec) -> Rollout {
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let strategy = spec.strategy.as_ref();
        if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            return Rollout {
                replicas: replicas as u32,
                unavailable: replicas as u32,
                setting: "strategy Recreate".into(),
            };
        }
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let unavailable = rolling.and_then(|r| r.max_unavailable.clone());
        let surge = rolling.and_then(|r| r.max_surge.clone());
        let setting = match &unavailable {
            Some(v) => format!("maxUnavailable {}", shown(v)),
            None => format!("maxUnavailable {DEFAULT_SHARE} (the default)"),
        };
        let default = IntOrString::String(DEFAULT_SHARE.into());
        let down = resolve(unavailable.as_ref().unwrap_or(&default), replicas, false);
        let up = resolve(surge.as_ref().unwrap_or(&default), replicas, true);
        let unavailable = if down == 0 && up == 0 { 1 } else { down };
        Rollout {
            replicas: replicas as u32,
            unavailable: unavailable.min(replicas) as u32,
            setting,
        }
    }

    /// What to tell the operator when a rollout costs capacity; `None` when it does not.
    pub fn warning(&self, deployment: &str) -> Option<String> {
        (self.unavailable > 0).then(|| {
            format!(
                "a rollout of Deployment {deployment} takes {} of its {} pods out of \
                 service before their replacements are Ready ({}); their clients reconnect to the \
                 pods left, which tidegate keeps near its target occupancy, and are refused until \
                 the replacements boot. Set spec.strategy.rollingUpdate.maxUnavailable to 0 \
                 (deploy/README.md, \"Rolling updates\")",
                self.unavailable, self.replicas, self.setting
            )
        })
    }
}

fn shown(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// `v` as a count of pods out of `replicas`; an unreadable value counts as the default.
fn resolve(v: &IntOrString, replicas: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .unwrap_or(25.0)
                .max(0.0);
            let share = percent / 100.0 * f64::from(replicas);
            (if round_up {
                share.ceil()
            } else {
                share.floor()
            }) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};

    use super::*;

    fn spec(replicas: i32, strategy: Option<DeploymentStrategy>) -> DeploymentSpec {
        DeploymentSpec {
            replicas: Some(replicas),
            strategy,
            ..DeploymentSpec::default()
        }
    }

    fn rolling(unavailable: Option<IntOrString>, surge: Option<IntOrString>) -> DeploymentStrategy {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: unavailable,
                max_surge: surge,
            }),
        }
    }

    fn pct(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    #[test]
    fn the_default_strategy_takes_a_quarter_rounded_down() {
        let r = Rollout::of(&spec(8, None));
        assert_eq!(r.unavailable, 2);
        assert_eq!(r.setting, "maxUnavailable 25% (the default)");
        let w = r.warning("demo/echo").unwrap();
        assert!(w.contains("takes 2 of its 8 pods"), "{w}");
        assert!(w.contains("maxUnavailable to 0"), "{w}");
        // 25 % of 3 rounds down to 0, and the default surge of 1 keeps it there.
        assert_eq!(Rollout::of(&spec(3, None)).unavailable, 0);
    }

    #[test]
    fn zero_unavailable_is_safe_unless_the_surge_is_zero_too() {
        let safe = Rollout::of(&spec(
            10,
            Some(rolling(Some(IntOrString::Int(0)), pct("25%"))),
        ));
        assert_eq!(safe.unavailable, 0);
        assert_eq!(safe.warning("demo/echo"), None);
        // Both 0: the controller takes one pod down at a time.
        let both = rolling(Some(IntOrString::Int(0)), Some(IntOrString::Int(0)));
        assert_eq!(Rollout::of(&spec(10, Some(both))).unavailable, 1);
        let both = rolling(pct("0%"), pct("0%"));
        assert_eq!(Rollout::of(&spec(10, Some(both))).unavailable, 1);
    }

    #[test]
    fn counts_and_percentages_resolve_against_the_replicas() {
        let r = Rollout::of(&spec(10, Some(rolling(Some(IntOrString::Int(3)), None))));
        assert_eq!((r.unavailable, r.setting.as_str()), (3, "maxUnavailable 3"));
        let r = Rollout::of(&spec(10, Some(rolling(pct("50%"), None))));
        assert_eq!(
            (r.unavailable, r.setting.as_str()),
            (5, "maxUnavailable 50%")
        );
        // Never more than there are pods.
        let r = Rollout::of(&spec(2, Some(rolling(Some(IntOrString::Int(5)), None))));
        assert_eq!(r.unavailable, 2);
    }

    #[test]
    fn recreate_takes_every_pod() {
        let recreate = DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        };
        let r = Rollout::of(&spec(6, Some(recreate)));
        assert_eq!(
            (r.unavailable, r.setting.as_str()),
            (6, "strategy Recreate")
        );
        assert!(r.warning("demo/echo").unwrap().contains("6 of its 6"));
    }
}
