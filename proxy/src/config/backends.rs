//! `backends:` — where the backends come from: static addresses, local processes, or a
//! Kubernetes Service's EndpointSlices (`config/kubernetes.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::Error;

/// The discovery sources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backends {
    /// Fixed backends: `host:port` with an IP address, or `{address, max_connections}` to
    /// override the cap for one backend. Default: none.
    #[serde(rename = "static")]
    pub static_: Vec<StaticBackend>,
    /// Backends run as local processes on 127.0.0.1 and scaled by the scaler (local mode).
    /// Default: off.
    pub local: Option<LocalBackends>,
    /// The endpoints of a Kubernetes Service, from its EndpointSlices. Default: off.
    pub kubernetes: Option<super::KubernetesBackends>,
    /// Take the backends (and their drain marks) from the peers that have a source of their
    /// own — an edge beside one that runs `backends.local`. Needs `peers`. Default: false.
    pub from_peers: bool,
    /// Open every backend connection with a PROXY header naming the client (`off` or `v2`).
    /// Default `off`.
    pub send_proxy_protocol: super::SendProxyProtocol,
}

/// `backends.local`: a pool of backend processes on this machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalBackends {
    /// Command line of one backend, split on whitespace; `{port}` and `{id}` are replaced.
    /// Default: this binary's own `echo-backend --listen 127.0.0.1:{port}`.
    pub command: Option<String>,
    /// Artificial start-up delay before a new process counts as ready, so a demo behaves like
    /// pods that take time to boot. Default `0s`.
    #[serde(with = "tidegate_common::duration")]
    pub boot_delay: Duration,
    /// Ports handed to backends, inclusive `[first, last]`. Default `[20000, 29999]`.
    pub port_range: [u16; 2],
    /// How readiness is checked: `tcp` (a connect succeeds) or an HTTP path such as
    /// `/healthz` (GET answers 2xx). Default `tcp`.
    pub readiness: String,
    /// How long a draining process that is kept only for its connections may keep them: then
    /// its WebSockets are closed with a 1001 close frame (so it empties and is removed), and
    /// it is stopped if connections the close could not end are left after
    /// `websocket_close_timeout`. Default `30s`.
    #[serde(with = "tidegate_common::duration")]
    pub drain_grace: Duration,
    /// After SIGTERM, how long before SIGKILL. Default `5s`.
    #[serde(with = "tidegate_common::duration")]
    pub stop_timeout: Duration,
    /// Processes started before the scaler's first decision. Default 2.
    pub initial: u32,
}

impl Default for LocalBackends {
    fn default() -> Self {
        Self {
            command: None,
            boot_delay: Duration::ZERO,
            port_range: [20000, 29999],
            readiness: "tcp".into(),
            drain_grace: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            initial: 2,
        }
    }
}

impl Backends {
    /// Whether the backends are the fixed `static` list (no discovery source fills the table).
    pub fn is_static(&self) -> bool {
        self.local.is_none() && self.kubernetes.is_none() && !self.from_peers
    }

    /// Whether this replica has a backend source of its own (static, local or Kubernetes).
    pub fn has_source(&self) -> bool {
        !self.static_.is_empty() || self.local.is_some() || self.kubernetes.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), Error> {
        if let Some(local) = &self.local {
            let [first, last] = local.port_range;
            if first == 0 || first > last {
                return Err(Error::Invalid {
                    field: "backends.local.port_range",
                    expected: "[first, last] with 0 < first <= last".into(),
                });
            }
            if local.readiness != "tcp" && !local.readiness.starts_with('/') {
                return Err(Error::Invalid {
                    field: "backends.local.readiness",
                    expected: format!(
                        "tcp or an HTTP path such as /healthz (got {:?})",
                        local.readiness
                    ),
                });
            }
            if local
                .command
                .as_deref()
                .is_some_and(|c| !c.contains("{port}"))
            {
                return Err(Error::Invalid {
                    field: "backends.local.command",
                    expected: "a command line containing {port}".into(),
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for b in &self.static_ {
            if !seen.insert(b.address) {
                return Err(Error::Invalid {
                    field: "backends.static",
                    expected: format!("each address once ({} is listed twice)", b.address),
                });
            }
            if b.max_connections == Some(0) {
                return Err(Error::Invalid {
                    field: "backends.static[].max_connections",
                    expected: format!("at least 1 (for {})", b.address),
                });
            }
        }
        Ok(())
    }
}

/// One fixed backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StaticBackend {
    /// IP address and port (names are not resolved: a proxy must not block on DNS).
    pub address: SocketAddr,
    /// Overrides `max_connections_per_backend` for this backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl<'de> Deserialize<'de> for StaticBackend {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(StaticBackendVisitor)
    }
}

struct StaticBackendVisitor;

impl<'de> Visitor<'de> for StaticBackendVisitor {
    type Value = StaticBackend;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"ip:port\" or {address: \"ip:port\", max_connections: N}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StaticBackend, E> {
        Ok(StaticBackend {
            address: parse_address(v)?,
            max_connections: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StaticBackend, A::Error> {
        let (mut address, mut max_connections) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "address" => address = Some(parse_address(&map.next_value::<String>()?)?),
                "max_connections" => max_connections = Some(map.next_value()?),
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["address", "max_connections"],
                    ));
                }
            }
        }
        let address = address.ok_or_else(|| de::Error::missing_field("address"))?;
        Ok(StaticBackend {
            address,
            max_connections,
        })
    }
}

fn parse_address<E: de::Error>(v: &str) -> Result<SocketAddr, E> {
    v.parse()
        .map_err(|_| E::custom(format!("invalid backend address {v:?}: expected ip:port")))
}
