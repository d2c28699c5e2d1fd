//! tidegate's data plane: a WebSocket-aware edge proxy on pingora, and the `tidegate` binary's
//! library.
//!
//! Where to start:
//! - [`server::prepare`] wires everything: two listeners and the side work (discovery, scaler,
//!   config watch) run as pingora background services sharing pingora's shutdown.
//! - [`listener`] reads each connection's first request head ([`head`]) and sends WebSocket
//!   upgrades down the fast path in [`tunnel`] — reserve a slot, connect, pass the handshake,
//!   promote on 101, relay with no idle buffers ([`relay`]) — and everything else to pingora's
//!   HTTP proxy ([`http`]).
//! - [`admin`] serves the status page, `/metrics` ([`metrics`]), `/healthz`, `/readyz`,
//!   `/api/v1/state` and `/api/v1/history`.
//! - [`scale`] is the live scaler loop and its [`scale::ScaleTarget`] seam; [`scale::local`]
//!   the local process pool; [`kube`] Kubernetes mode: EndpointSlice discovery, the Deployment
//!   target with drain-first actuation, and Lease leadership.
//! - [`config`] is the YAML config and [`reload`] applies a changed file without dropping
//!   connections.
//! - Tools: [`echo`] (a WebSocket echo backend), [`loadgen`] (a client population following a
//!   profile), [`demo`] (the whole loop on one machine), [`cli`] (the command line).
//!
//! The exact counts themselves live in `tidegate_common::BackendTable`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod echo;
pub mod head;
pub mod http;
pub mod kube;
pub mod listener;
pub mod loadgen;
pub mod metrics;
pub mod relay;
pub mod reload;
pub mod respond;
pub mod scale;
pub mod server;
pub mod shared;
pub mod signals;
pub mod tunnel;
