//! tidegate's tools, each written once and used by the `tidegate` binary, the demo, the tests
//! and the benchmarks alike. Nothing here depends on the proxy: the tools talk to it over
//! sockets, as real clients and backends do.
//!
//! Where to start:
//! - [`echo`]: the WebSocket echo backend (`tidegate echo-backend`), with counters and a way to
//!   close connections from the server side — the backend of tests, benchmarks and the demo.
//! - [`load`]: the load generator. [`load::population`] is a client population that follows a
//!   connection-count profile and reconnects with jittered backoff (`tidegate loadgen`, the
//!   demo); [`load::idle`], [`load::handshakes`], [`load::latency`] and [`load::throughput`] are
//!   the benchmark scenarios (`wsbench`). All of them open WebSockets through
//!   [`load::endpoint`].
//! - [`signals`]: waiting for SIGINT or SIGTERM in a tool's foreground loop.

pub mod echo;
pub mod load;
pub mod signals;
