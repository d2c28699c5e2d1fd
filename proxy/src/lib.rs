//! tidegate's data plane: a WebSocket-aware edge proxy on pingora.
//!
//! Where to start:
//! - [`server::prepare`] wires everything: two listeners run as pingora background services.
//! - [`listener`] reads each connection's first request head ([`head`]) and sends WebSocket
//!   upgrades down the fast path in [`tunnel`] — reserve a slot, connect, pass the handshake,
//!   promote on 101, relay with no idle buffers ([`relay`]) — and everything else to pingora's
//!   HTTP proxy ([`http`]).
//! - [`admin`] serves `/metrics` ([`metrics`]), `/healthz`, `/readyz` and `/api/v1/state`.
//! - [`kube`] is Kubernetes mode: EndpointSlice discovery, the Deployment scale target with
//!   drain-first actuation, and Lease leadership.
//! - [`config`] is the YAML config; [`echo`] a WebSocket echo backend for tests, benches and
//!   the demo.
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
