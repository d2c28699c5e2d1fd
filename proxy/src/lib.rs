//! tidegate's proxy: the data plane, the control plane's I/O side, and the `tidegate` binary's
//! library. `docs/architecture.md` tells the whole story; this is the map.
//!
//! The data flow, one room each:
//! - [`dataplane`]: every client connection — accept, read the head, route with a reservation
//!   under the cap, pass the handshake, relay with no idle buffers; plain HTTP through
//!   pingora; the drain on SIGTERM that closes WebSockets with 1001. (The routing rule and the
//!   count invariant themselves live in `tidegate_common::table`.)
//! - [`tls`]: TLS termination under the data plane — certificate pairs checked from PEM files,
//!   the SNI store rustls asks, their rotation, the accept step.
//! - [`discovery`]: where backends come from (static, local processes, Kubernetes
//!   EndpointSlices), published through one [`discovery::Catalog`] into the backend table.
//! - [`scaling`]: the scaler loop — observe the demand, let the pure policy of
//!   `tidegate_scaler` decide, hand the decision to a target.
//! - [`target`]: what the scaler actuates, behind [`target::ScaleTarget`]: a Deployment (the
//!   Kubernetes writes), the local process pool, or a dry run.
//! - [`leader`]: the Lease that lets one replica of several scale.
//! - [`peers`]: the exchange that makes several replicas one edge — shared counts, caps held on
//!   the sum (each replica admits within its share), the cluster's demand for the leader's
//!   scaler, and the leader's drain marks applied everywhere.
//! - [`admin`]: the status page, `/metrics`, `/healthz`, `/readyz`, the JSON API and the peer
//!   exchange's endpoint.
//!
//! Around them: [`config`] (the YAML, validated once) and [`reload`] (a changed file applied
//! without dropping connections); [`kube`] (the Kubernetes client the three Kubernetes parts
//! share); [`metrics`] (how components register their metrics); [`server`] (which components a
//! config asks for, run as pingora services); [`cli`] and [`demo`] (the command line and the
//! whole loop on one machine). The echo backend and the load generator are in `tidegate_tools`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod demo;
pub mod discovery;
pub mod kube;
pub mod leader;
pub mod metrics;
pub mod peers;
pub mod reload;
pub mod scaling;
pub mod server;
pub mod target;
pub mod tls;
