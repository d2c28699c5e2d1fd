//! The data plane: every client connection, from accept to close.
//!
//! The path of one connection, in the order the modules run:
//! 1. [`listener`] accepts it (its own accept loop as a pingora background service), with the
//!    socket options it has from the listening socket ([`inherited`]);
//! 2. [`inbound`] reads the PROXY header ([`proxy_protocol`]) if one is
//!    expected, and settles who the [`client`] is; [`head`] reads and checks its first request
//!    head, bounded in size and time, and tells a WebSocket upgrade from everything else;
//! 3. an upgrade takes the fast path in [`tunnel`]: reserve a slot under the cap in the backend
//!    table (the routing rule and the count invariant live in `tidegate_common::table`),
//!    connect, pass the handshake, promote the reservation on the `101`, then [`relay`] the two
//!    sockets with no buffer held while idle;
//! 4. anything else goes to pingora's HTTP proxy in [`http`], with the same reservation rules for
//!    upgrades that arrive later on a kept-alive connection.
//!
//! The client's stream is plain TCP or TLS terminated by [`crate::tls`] (between the PROXY header
//! and the first head); [`transport`] says what differs, and the client's scheme reaches
//! backends as `X-Forwarded-Proto` through [`client::Forwarding`].
//!
//! The relay follows the WebSocket frames both ways ([`frames`]) so that it can close a
//! connection properly when asked: [`connections`] counts every open connection and gives each
//! relayed WebSocket a signal, and [`drain`] uses them on SIGTERM (and the targets when a
//! drained backend's grace runs out).
//!
//! [`respond`] writes the proxy's own short answers (400, 408, 431, 502, 503, 504) and
//! [`metrics`] holds what the paths count. [`turns`] keeps bursts of new and refused
//! connections from delaying established relays. [`Proxy`] is what they all read.

pub mod client;
pub mod connections;
pub mod drain;
pub mod frames;
pub mod head;
pub mod http;
pub mod inbound;
pub mod inherited;
pub mod listener;
pub mod metrics;
pub mod proxy_protocol;
pub mod relay;
pub mod respond;
pub mod transport;
pub mod tunnel;
pub mod turns;

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::Registry;
use tidegate_common::{BackendTable, QueuePolicy};

use crate::config::Config;
pub use connections::Connections;
pub use drain::Drain;
pub use metrics::Metrics;
pub use turns::Refusals;

/// What every connection task reads: the config in force, the backend table with its exact
/// counts, the data plane's metrics, the open connections and the drain.
pub struct Proxy {
    /// The config in force; swapped whole on reload, read once per connection.
    pub config: ArcSwap<Config>,
    /// Backends and their exact counts.
    pub table: Arc<BackendTable>,
    /// What the connection paths count.
    pub metrics: Metrics,
    /// The open connections, and the WebSockets the proxy can ask to close.
    pub connections: Arc<Connections>,
    /// The drain on SIGTERM: `/readyz`, the traffic listener's stop, its metrics.
    pub drain: Drain,
    /// Turns for answering and closing refused connections, one per traffic worker.
    pub refusals: Refusals,
}

impl Proxy {
    /// A data plane over `table` with `config`, its metrics registered in `registry`.
    pub fn new(
        config: Config,
        table: Arc<BackendTable>,
        registry: &Registry,
    ) -> Result<Self, crate::metrics::Error> {
        Ok(Self {
            metrics: Metrics::register(registry, &table)?,
            refusals: Refusals::new(config.threads),
            config: ArcSwap::from_pointee(config),
            table,
            connections: Arc::default(),
            drain: Drain::register(registry)?,
        })
    }
}

impl Config {
    /// The queue rules for upgrades.
    pub fn queue_policy(&self) -> QueuePolicy {
        QueuePolicy {
            timeout: self.queue_timeout,
            max_waiting: self.queue_max,
        }
    }
}
