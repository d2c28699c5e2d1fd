//! `peers:` — the other replicas of this edge, with which it shares counts, caps, demand and
//! drain marks over the admin listener (`docs/architecture.md`, "One edge across replicas").
//!
//! ```yaml
//! peers:
//!   static: [10.0.0.11:9090, 10.0.0.12:9090]   # admin addresses; this replica's own may be listed
//!   # or: kubernetes: {namespace: demo, service: tidegate-peers, port: admin}
//!   sync_interval: 200ms
//!   peer_timeout: 5s
//!   call_timeout: 1s
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Error, PortRef};

/// Default time between two exchanges with every peer.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// Default time a silent peer keeps its last report before it is dropped.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest one push to a peer may take (connect, send, answer).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The `peers` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Peers {
    /// The peers' admin addresses (`ip:port`); this replica's own address may be in the list
    /// (it is recognised and left out), so every replica can share one config. Reloadable.
    /// Default: none (a replica alone, holding whole caps).
    #[serde(rename = "static")]
    pub static_: Vec<SocketAddr>,
    /// The proxies' own headless Service, found through its EndpointSlices. Default: off.
    pub kubernetes: Option<KubernetesPeers>,
    /// Time between two exchanges with every peer. Default `200ms`.
    #[serde(with = "tidegate_common::duration")]
    pub sync_interval: Duration,
    /// A peer not heard from for this long is dropped: its connections leave the view and its
    /// share of every cap is taken over. Default `5s`.
    #[serde(with = "tidegate_common::duration")]
    pub peer_timeout: Duration,
    /// Longest one push to a peer may take, connect to answer. Default `1s`.
    #[serde(with = "tidegate_common::duration")]
    pub call_timeout: Duration,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            static_: Vec::new(),
            kubernetes: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// `peers.kubernetes`: the endpoints of the proxies' headless Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesPeers {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service (EndpointSlices labelled `kubernetes.io/service-name=<service>`).
    pub service: String,
    /// The admin port: a port name of the slices (`admin`), or a number used as is.
    pub port: PortRef,
}

impl Peers {
    /// The cross-field rules of the section; errors name the field.
    pub(super) fn validate(&self) -> Result<(), Error> {
        let invalid =
            |field: &'static str, expected: String| Err(Error::Invalid { field, expected });
        if let Some(k) = &self.kubernetes {
            if !self.static_.is_empty() {
                return invalid(
                    "peers.kubernetes",
                    "the only peer source (no peers.static beside it)".into(),
                );
            }
            if k.namespace.is_empty() || k.service.is_empty() {
                return invalid("peers.kubernetes", "a namespace and a service name".into());
            }
            if matches!(&k.port, PortRef::Number(0)) || k.port == PortRef::Name(String::new()) {
                return invalid(
                    "peers.kubernetes.port",
                    "a port name or a number above 0".into(),
                );
            }
        }
        if self.static_.iter().any(|a| a.port() == 0) {
            return invalid("peers.static", "addresses with a port above 0".into());
        }
        if self.sync_interval < Duration::from_millis(10) {
            return invalid("peers.sync_interval", "at least 10ms".into());
        }
        if self.peer_timeout < self.sync_interval * 3 {
            let least = self.sync_interval * 3;
            return invalid(
                "peers.peer_timeout",
                format!("at least three sync intervals ({least:?})"),
            );
        }
        if self.call_timeout.is_zero() || self.call_timeout >= self.peer_timeout {
            return invalid(
                "peers.call_timeout",
                format!("above 0 and below peer_timeout ({:?})", self.peer_timeout),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn the_documented_peers_sections_parse_with_their_defaults() {
        let c = parse(
            "peers:\n  static: [127.0.0.1:9091, 127.0.0.1:9092]\n",
            "p.yaml",
        )
        .unwrap();
        let p = c.peers.unwrap();
        assert_eq!(p.static_.len(), 2);
        assert_eq!(p.sync_interval, super::DEFAULT_SYNC_INTERVAL);
        assert_eq!(p.peer_timeout, super::DEFAULT_PEER_TIMEOUT);
        assert_eq!(p.call_timeout, super::DEFAULT_CALL_TIMEOUT);
        let k = "peers:\n  kubernetes: {namespace: demo, service: tidegate-peers, port: admin}\n  sync_interval: 100ms\n";
        let p = parse(k, "p.yaml").unwrap().peers.unwrap();
        assert_eq!(p.kubernetes.unwrap().service, "tidegate-peers");
        assert_eq!(p.sync_interval, std::time::Duration::from_millis(100));
        assert_eq!(
            parse("peers: {}\n", "p.yaml").unwrap().peers,
            Some(super::Peers::default())
        );
    }

    #[test]
    fn bad_peers_sections_are_refused_naming_the_field() {
        for (text, field) in [
            (
                "peers:\n  static: [127.0.0.1:9091]\n  kubernetes: {namespace: d, service: s, port: admin}\n",
                "peers.kubernetes",
            ),
            ("peers:\n  static: [127.0.0.1:0]\n", "peers.static"),
            ("peers:\n  static: [peer-a:9090]\n", "peers"),
            ("peers:\n  sync_interval: 1ms\n", "peers.sync_interval"),
            ("peers:\n  sync_interval: 2s\n", "peers.peer_timeout"),
            ("peers:\n  call_timeout: 10s\n", "peers.call_timeout"),
            ("peers:\n  sync_every: 1s\n", "sync_every"),
            ("backends:\n  from_peers: true\n", "backends.from_peers"),
            (
                "backends:\n  from_peers: true\n  static: [127.0.0.1:9001]\npeers: {}\n",
                "backends.from_peers",
            ),
        ] {
            let err = parse(text, "p.yaml").unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        let ok = parse(
            "backends:\n  from_peers: true\npeers: {static: [127.0.0.1:9091]}\n",
            "p.yaml",
        );
        assert!(ok.unwrap().backends.from_peers);
    }
}
