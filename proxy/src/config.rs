//! The proxy's configuration: YAML, every field optional with a documented default, unknown
//! fields refused, validated once into an immutable [`Config`].
//!
//! ```yaml
//! listen: 0.0.0.0:8080
//! admin_listen: 0.0.0.0:9090
//! backends:
//!   static:
//!     - 10.0.0.5:9000
//!     - { address: 10.0.0.6:9000, max_connections: 500 }
//! max_connections_per_backend: 1000
//! queue_timeout: 5s
//! ```

mod backends;
mod kubernetes;
mod load;
mod network;
mod peers;
mod scaler;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidegate_common::duration;
use tidegate_common::telemetry::LogFormat;

pub use backends::{Backends, LocalBackends, StaticBackend};
pub use kubernetes::{
    DEFAULT_LEASE_DURATION, DEFAULT_RENEW_PERIOD, DeploymentRef, KubeClientConfig,
    KubernetesBackends, LeaderElection, PortRef,
};
pub use load::{Error, MAX_CONFIG_BYTES, load_file, parse};
pub use network::{
    Cidr, DEFAULT_KEEPALIVE_COUNT, DEFAULT_KEEPALIVE_IDLE, DEFAULT_KEEPALIVE_INTERVAL, Keepalive,
    ProxyProtocol, SendProxyProtocol, TcpKeepalive,
};
pub use peers::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_PEER_TIMEOUT, DEFAULT_SYNC_INTERVAL, KubernetesPeers, Peers,
};
pub use scaler::ScalerSection;
pub use tls::{DEFAULT_CERTIFICATE_NAME, SniCertificate, TlsSection};

/// Default traffic listener. Loopback: a cluster deployment sets `0.0.0.0:8080`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener (`/metrics`, `/healthz`, `/readyz`, `/api/v1/state`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default cap of live + pending WebSockets per backend.
pub const DEFAULT_MAX_CONNECTIONS_PER_BACKEND: u32 = 1000;
/// Default longest wait for a slot when every backend is full.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default most upgrades waiting for a slot at once.
pub const DEFAULT_QUEUE_MAX: usize = 1024;
/// Default `Retry-After` on a 503.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Default timeout of one TCP connect to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of backends tried for one connection.
pub const DEFAULT_CONNECT_ATTEMPTS: u32 = 3;
/// Default time a backend is kept out of routing after a failed connect.
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);
/// Default idle timeout of an upgraded WebSocket (no bytes either way).
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default time a client has to send a whole request head.
pub const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest request head accepted.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;
/// Default time a backend has to answer an upgrade.
pub const DEFAULT_UPSTREAM_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default grace period on shutdown (after `shutdown_delay`) before what is open is cut.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Default time the components get to stop after the drain.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

// The drain (`docs/architecture.md`, "A drain that closes WebSockets properly").
/// Default time the traffic listener keeps accepting after SIGTERM (with `/readyz` at 503).
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// Default time a WebSocket the proxy closes gets to end its frame in flight and to answer.
pub const DEFAULT_WEBSOCKET_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole proxy configuration. Every field has a default; see the constants above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the WebSocket/HTTP traffic listener binds. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Address the admin listener binds. Default `127.0.0.1:9090`.
    pub admin_listen: SocketAddr,
    /// Where the backends come from.
    pub backends: Backends,
    /// The most live + pending WebSockets one backend is given (per-backend overrides in
    /// `backends.static`). Default 1000.
    pub max_connections_per_backend: u32,
    /// Longest an upgrade waits for a slot when every backend is full; `0s` answers 503 at
    /// once. Default `5s`.
    #[serde(with = "duration")]
    pub queue_timeout: Duration,
    /// Most upgrades waiting for a slot at once; more get 503 at once. Default 1024.
    pub queue_max: usize,
    /// `Retry-After` sent with a 503, rounded up to whole seconds. Default `5s`.
    #[serde(with = "duration")]
    pub retry_after: Duration,
    /// Timeout of one TCP connect to a backend. Default `2s`.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Backends tried for one connection before answering 502. Default 3.
    pub connect_attempts: u32,
    /// How long a backend that refused a connect is kept out of routing. Default `10s`.
    #[serde(with = "duration")]
    pub eject_for: Duration,
    /// An upgraded WebSocket with no bytes either way for this long is closed. Default `1h`.
    #[serde(with = "duration")]
    pub websocket_idle_timeout: Duration,
    /// Time a client has to send a whole request head (slowloris guard), else 408.
    /// Default `10s`.
    #[serde(with = "duration")]
    pub request_header_timeout: Duration,
    /// Largest request head (request line + headers) accepted, else 431. Default 16384.
    pub max_request_header_bytes: usize,
    /// Time a backend has to answer an upgrade request, else 504. Default `10s`.
    #[serde(with = "duration")]
    pub upstream_handshake_timeout: Duration,
    /// Worker threads of the traffic listener, each with a listening socket of its own
    /// (`SO_REUSEPORT`). Default: the cores the process may use ([`available_threads`],
    /// which honours a cgroup CPU limit).
    pub threads: usize,
    /// On SIGTERM, once `shutdown_delay` is over: how long open connections get. WebSockets
    /// are closed with a 1001 close frame spread over its first half; what is still open at
    /// its end is cut. The process exits as soon as nothing is open. Default `30s`.
    #[serde(with = "duration")]
    pub grace_period: Duration,
    /// After the drain: how long the components get to stop (a leader releases its Lease,
    /// local backends are stopped). Default `5s`.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    // The drain's fields.
    /// On SIGTERM: how long the traffic listener keeps accepting, with `/readyz` answering 503
    /// so that load balancers stop sending; `grace_period` starts when it ends. Default `5s`.
    #[serde(with = "duration")]
    pub shutdown_delay: Duration,
    /// When the proxy closes a WebSocket (shutdown, or a drained backend's `drain_grace` ran
    /// out): how long the frame in flight has to end and the peers have to answer the close
    /// frame before the connection is cut. Default `5s`.
    #[serde(with = "duration")]
    pub websocket_close_timeout: Duration,
    /// Log lines as `text` (default) or `json`. The level comes from `RUST_LOG` (default info).
    pub log_format: LogFormat,
    /// Tell backends who the client is: `X-Forwarded-For` (the client address, appended to the
    /// chain a trusted proxy sent) and `X-Forwarded-Proto`; client-sent `X-Forwarded-For`,
    /// `X-Real-IP`, `Forwarded` and `X-Forwarded-Proto` are dropped unless the client is in
    /// `trusted_proxies`. `false` passes those headers through untouched. Default `true`.
    pub forwarded_headers: bool,
    /// Address blocks (`10.0.0.0/8`, `2001:db8::/32`, or one address) whose forwarding headers
    /// are believed and extended rather than dropped. Default: none.
    pub trusted_proxies: Vec<Cidr>,
    /// Whether connections to the traffic listener start with a PROXY header (`off`, `v1`,
    /// `v2`, `any`); when on, the header is required, read within `request_header_timeout`,
    /// and its source address is the client's. Default `off`.
    pub proxy_protocol: ProxyProtocol,
    /// TCP keepalive on the client and backend sockets of every proxied connection: `off`, or
    /// `{idle, interval, count}`. Default `{idle: 60s, interval: 10s, count: 6}`.
    pub tcp_keepalive: Keepalive,
    /// Relay upgraded WebSockets with tidegate's own buffer-free relay (`true`, default) or
    /// hand them to pingora's tunnel like any request (`false`: ~60 KB per idle WebSocket;
    /// kept for comparison and as a fallback). Counting and routing are the same either way.
    pub websocket_fast_path: bool,
    /// The embedded autoscaler; off when absent. Needs a scalable backend source
    /// (`backends.local`, or `backends.kubernetes` with `scaler.deployment`).
    pub scaler: Option<ScalerSection>,
    /// Only the holder of this Lease runs the scaler (several proxy replicas). Default: off
    /// (this instance always scales).
    pub leader_election: Option<LeaderElection>,
    /// Kubernetes credentials. Default: `$KUBECONFIG`, `~/.kube/config` or the service account.
    pub kube_client: Option<KubeClientConfig>,
    /// The other replicas of this edge: counts, caps, demand and drain marks are shared with
    /// them. Default: off (this replica counts and caps alone).
    pub peers: Option<Peers>,
    /// TLS termination (`wss://`, `https://`) with these certificates; see
    /// [`TlsSection`]. Default: off (plain `ws://` and `http://` only).
    pub tls: Option<TlsSection>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: parse_default(DEFAULT_LISTEN),
            admin_listen: parse_default(DEFAULT_ADMIN_LISTEN),
            backends: Backends::default(),
            max_connections_per_backend: DEFAULT_MAX_CONNECTIONS_PER_BACKEND,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            queue_max: DEFAULT_QUEUE_MAX,
            retry_after: DEFAULT_RETRY_AFTER,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            connect_attempts: DEFAULT_CONNECT_ATTEMPTS,
            eject_for: DEFAULT_EJECT_FOR,
            websocket_idle_timeout: DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
            request_header_timeout: DEFAULT_REQUEST_HEADER_TIMEOUT,
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            upstream_handshake_timeout: DEFAULT_UPSTREAM_HANDSHAKE_TIMEOUT,
            threads: available_threads(),
            grace_period: DEFAULT_GRACE_PERIOD,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            websocket_close_timeout: DEFAULT_WEBSOCKET_CLOSE_TIMEOUT,
            log_format: LogFormat::Text,
            forwarded_headers: true,
            trusted_proxies: Vec::new(),
            proxy_protocol: ProxyProtocol::Off,
            tcp_keepalive: Keepalive::default(),
            websocket_fast_path: true,
            scaler: None,
            leader_election: None,
            kube_client: None,
            peers: None,
            tls: None,
        }
    }
}

/// Most worker threads `threads` accepts.
pub const MAX_THREADS: usize = 256;

/// The cores this process may use, as
/// [`std::thread::available_parallelism`] counts them — on Linux the CPU affinity mask and a
/// cgroup (v1 or v2) CPU quota, rounded down (a pod limited to `1500m` gets 1), at least 1 and
/// at most [`MAX_THREADS`].
pub fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_THREADS)
}

fn parse_default(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|_| unreachable!("default address {addr} parses"))
}

impl Config {
    /// Cross-field rules, checked once before a config is used. Each error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid =
            |field: &'static str, expected: String| Err(Error::Invalid { field, expected });
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return invalid(
                "admin_listen",
                format!("an address other than listen ({})", self.listen),
            );
        }
        if self.max_connections_per_backend == 0 {
            return invalid("max_connections_per_backend", "at least 1".into());
        }
        if self.connect_attempts == 0 {
            return invalid("connect_attempts", "at least 1".into());
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return invalid("threads", format!("between 1 and {MAX_THREADS}"));
        }
        if !(1024..=1024 * 1024).contains(&self.max_request_header_bytes) {
            return invalid(
                "max_request_header_bytes",
                "between 1024 and 1048576".into(),
            );
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("websocket_idle_timeout", self.websocket_idle_timeout),
            ("request_header_timeout", self.request_header_timeout),
            ("websocket_close_timeout", self.websocket_close_timeout),
            (
                "upstream_handshake_timeout",
                self.upstream_handshake_timeout,
            ),
        ] {
            if d.is_zero() {
                return invalid(field, "a duration above zero".into());
            }
        }
        if let Some(k) = self.tcp_keepalive.0 {
            let secs = |d: Duration| (1..=32767).contains(&d.as_secs()) && d.subsec_nanos() == 0;
            if !secs(k.idle) || !secs(k.interval) {
                return invalid(
                    "tcp_keepalive",
                    "idle and interval in whole seconds between 1s and 32767s".into(),
                );
            }
            if !(1..=127).contains(&k.count) {
                return invalid("tcp_keepalive.count", "between 1 and 127".into());
            }
        }
        self.backends.validate()?;
        self.validate_kube()?;
        if let Some(peers) = &self.peers {
            peers.validate()?;
        }
        if self.backends.from_peers {
            let alone = self.backends.static_.is_empty()
                && self.backends.local.is_none()
                && self.backends.kubernetes.is_none();
            if self.peers.is_none() || !alone {
                return invalid(
                    "backends.from_peers",
                    "a peers section and no other backend source".into(),
                );
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate(self.listen, self.admin_listen)?;
        }
        if let Some(scaler) = &self.scaler {
            let kube = self.backends.kubernetes.is_some() && scaler.deployment.is_some();
            if self.backends.local.is_none() && !kube {
                return invalid(
                    "scaler",
                    "a scalable backend source: backends.local, or backends.kubernetes with \
                     scaler.deployment"
                        .into(),
                );
            }
            scaler.validate(self.max_connections_per_backend)?;
        }
        Ok(())
    }

    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_every_default() {
        let c = parse("", "empty.yaml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.websocket_idle_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn a_full_file_parses_into_domain_types() {
        let c = parse(
            "listen: 127.0.0.1:8081\nadmin_listen: 127.0.0.1:9091\nbackends:\n  static:\n    - 127.0.0.1:9001\n    - {address: 127.0.0.1:9002, max_connections: 5}\nmax_connections_per_backend: 10\nqueue_timeout: 0s\nretry_after: 2500ms\nlog_format: json\n",
            "full.yaml",
        )
        .unwrap();
        assert_eq!(c.queue_timeout, Duration::ZERO);
        assert_eq!(c.retry_after_secs(), 3);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.max_connections_per_backend, 10);
        let caps: Vec<_> = c
            .backends
            .static_
            .iter()
            .map(|b| b.max_connections)
            .collect();
        assert_eq!(caps, vec![None, Some(5)]);
    }

    #[test]
    fn errors_name_the_file_the_field_and_what_was_expected() {
        let err = parse("listen: 127.0.0.1:8081\nqueue_timout: 5s\n", "cm.yaml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cm.yaml") && text.contains("queue_timout"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
        let err = parse("queue_timeout: soon\n", "cm.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid duration") && err.contains("line 1"),
            "{err}"
        );
        let err = parse("max_connections_per_backend: 0\n", "cm.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_connections_per_backend") && err.contains("at least 1"),
            "{err}"
        );
    }
}
