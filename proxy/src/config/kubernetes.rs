//! The Kubernetes parts of the config: `backends.kubernetes` (EndpointSlice discovery),
//! `scaler.deployment` (what the scaler patches), `leader_election` (the Lease that picks the one
//! replica that scales) and `kube_client` (which credentials to use; in a pod, none are needed).
//!
//! ```yaml
//! backends:
//!   kubernetes: {namespace: demo, service: echo, port: ws}
//! scaler:
//!   deployment: {namespace: demo, name: echo}
//! leader_election: {namespace: demo, lease_name: tidegate}
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, Error};

/// Default lease duration: a follower takes over this long after the holder's last renewal.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default time between two renewals (and between two attempts to acquire).
pub const DEFAULT_RENEW_PERIOD: Duration = Duration::from_secs(5);

/// `backends.kubernetes`: the ready endpoints of one Service, from its EndpointSlices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesBackends {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service (EndpointSlices labelled `kubernetes.io/service-name=<service>`).
    pub service: String,
    /// The port to connect to: a port name of the slices (`ws`), or a number used as is.
    pub port: PortRef,
    /// With `scaler.deployment`: once a pod has been drained this long (counted from when the
    /// scaler marked it) and is kept only for its connections, its WebSockets are closed with
    /// a 1001 close frame, so that it empties and is removed. Default: none (a drained pod
    /// keeps its connections until they close).
    #[serde(
        default,
        with = "tidegate_common::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_grace: Option<Duration>,
}

/// A port by name or number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// A port number, used on every endpoint address.
    Number(u16),
    /// The EndpointSlice port with this name.
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// `scaler.deployment`: the Deployment whose `scale` subresource the scaler patches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRef {
    /// Namespace of the Deployment.
    pub namespace: String,
    /// Name of the Deployment.
    pub name: String,
}

/// `leader_election`: only the holder of this `coordination.k8s.io/v1` Lease scales.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// A follower takes over this long after it last saw the holder renew. Default `15s`.
    #[serde(with = "tidegate_common::duration", default = "default_lease_duration")]
    pub lease_duration: Duration,
    /// Time between renewals; the holder stops scaling if it could not renew for
    /// `lease_duration - renew_period`. Default `5s`.
    #[serde(with = "tidegate_common::duration", default = "default_renew_period")]
    pub renew_period: Duration,
    /// This instance's name in the Lease. Default: `$POD_NAME`, else the host name.
    #[serde(default)]
    pub identity: Option<String>,
}

fn default_lease_duration() -> Duration {
    DEFAULT_LEASE_DURATION
}

fn default_renew_period() -> Duration {
    DEFAULT_RENEW_PERIOD
}

impl LeaderElection {
    /// The longest one Lease or scaling call may take: half of the shorter of the renew period
    /// and the renew deadline (`lease_duration - renew_period`), so that a write started while
    /// leading lands before a follower may take over.
    pub fn call_timeout(&self) -> Duration {
        let deadline = self.lease_duration.saturating_sub(self.renew_period);
        deadline.min(self.renew_period) / 2
    }

    /// The identity to hold the Lease as: the configured one, else `$POD_NAME`, else the host
    /// name, else `tidegate-<pid>`.
    pub fn resolved_identity(&self) -> String {
        if let Some(id) = self.identity.as_ref().filter(|i| !i.is_empty()) {
            return id.clone();
        }
        let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        env("POD_NAME")
            .or_else(|| env("HOSTNAME"))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| format!("tidegate-{}", std::process::id()))
    }
}

/// `kube_client`: where the Kubernetes credentials come from. Absent (the default):
/// `$KUBECONFIG`, `~/.kube/config`, or the pod's service account, as `kubectl` does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeClientConfig {
    /// A kubeconfig file to use instead.
    pub kubeconfig: Option<PathBuf>,
    /// The context of that kubeconfig (default: its current context).
    pub context: Option<String>,
}

fn invalid(field: &'static str, expected: impl Into<String>) -> Result<(), Error> {
    Err(Error::Invalid {
        field,
        expected: expected.into(),
    })
}

impl Config {
    /// The cross-field rules of the Kubernetes sections.
    pub(super) fn validate_kube(&self) -> Result<(), Error> {
        if let Some(k) = &self.backends.kubernetes {
            if k.namespace.is_empty() || k.service.is_empty() {
                return invalid("backends.kubernetes", "a namespace and a service name");
            }
            if matches!(&k.port, PortRef::Number(0)) || k.port == PortRef::Name(String::new()) {
                return invalid(
                    "backends.kubernetes.port",
                    "a port name or a number above 0",
                );
            }
            if self.backends.local.is_some() || !self.backends.static_.is_empty() {
                return invalid(
                    "backends.kubernetes",
                    "the only backend source (no backends.static or backends.local beside it)",
                );
            }
        }
        let deployment = self.scaler.as_ref().and_then(|s| s.deployment.as_ref());
        if let Some(d) = deployment {
            if d.namespace.is_empty() || d.name.is_empty() {
                return invalid("scaler.deployment", "a namespace and a name");
            }
            if self.backends.kubernetes.is_none() {
                return invalid("scaler.deployment", "backends.kubernetes beside it");
            }
        }
        if let Some(l) = &self.leader_election {
            if deployment.is_none() {
                return invalid("leader_election", "scaler.deployment beside it");
            }
            if l.namespace.is_empty() || l.lease_name.is_empty() {
                return invalid("leader_election", "a namespace and a lease_name");
            }
            if l.renew_period.is_zero() || l.renew_period >= l.lease_duration {
                return invalid(
                    "leader_election.renew_period",
                    format!("above 0 and below lease_duration ({:?})", l.lease_duration),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const FULL: &str = "backends:\n  kubernetes: {namespace: demo, service: echo, port: ws}\nmax_connections_per_backend: 100\nscaler:\n  deployment: {namespace: demo, name: echo}\n  min_replicas: 2\n  max_replicas: 50\n  boot_time: 30s\nleader_election: {namespace: demo, lease_name: tidegate}\n";

    #[test]
    fn the_documented_kubernetes_config_parses() {
        let c = parse(FULL, "k.yaml").unwrap();
        let k = c.backends.kubernetes.as_ref().unwrap();
        assert_eq!(k.port, super::PortRef::Name("ws".into()));
        let l = c.leader_election.unwrap();
        assert_eq!(l.lease_duration, super::DEFAULT_LEASE_DURATION);
        assert_eq!(l.renew_period, super::DEFAULT_RENEW_PERIOD);
        assert_eq!(c.scaler.unwrap().deployment.unwrap().name, "echo");
        let c = parse(&FULL.replace("port: ws", "port: 9000"), "k.yaml").unwrap();
        assert_eq!(
            c.backends.kubernetes.unwrap().port,
            super::PortRef::Number(9000)
        );
    }

    #[test]
    fn mismatched_sources_are_refused_naming_the_field() {
        let no_discovery = "scaler:\n  deployment: {namespace: demo, name: echo}\n";
        let err = parse(no_discovery, "k.yaml").unwrap_err().to_string();
        assert!(err.contains("scaler.deployment"), "{err}");
        let local = FULL.replace(
            "  kubernetes: {namespace: demo, service: echo, port: ws}\n",
            "  local: {}\n",
        );
        let err = parse(&local, "k.yaml").unwrap_err().to_string();
        assert!(err.contains("scaler.deployment"), "{err}");
        let both = FULL.replace("backends:\n", "backends:\n  local: {}\n");
        let err = parse(&both, "k.yaml").unwrap_err().to_string();
        assert!(err.contains("backends.kubernetes"), "{err}");
        let slow = FULL.replace("lease_name: tidegate}", "lease_name: t, renew_period: 20s}");
        let err = parse(&slow, "k.yaml").unwrap_err().to_string();
        assert!(err.contains("renew_period"), "{err}");
        let unknown = FULL.replace("port: ws}", "port: ws, zone: a}");
        assert!(parse(&unknown, "k.yaml").is_err());
    }

    #[test]
    fn a_scaler_with_kubernetes_discovery_but_no_deployment_is_refused() {
        let c = FULL.replace("  deployment: {namespace: demo, name: echo}\n", "");
        let c = c.replace(
            "leader_election: {namespace: demo, lease_name: tidegate}\n",
            "",
        );
        let err = parse(&c, "k.yaml").unwrap_err().to_string();
        assert!(err.contains("scaler"), "{err}");
    }
}
