//! Benchmark support for tidegate: see `benches/README.md` for the figures and how to reproduce them.
//!
//! Start at [`load`]: the four scenarios the `wsbench` load client runs against a WebSocket proxy
//! (idle memory, handshake cost, round-trip latency, throughput), each printing one JSON line.
//! [`endpoint`] opens and closes one WebSocket on the loopback interface, [`procstat`] reads what
//! the proxy under test costs from `/proc`, and [`table`] turns the JSON lines of a whole
//! `benches/peers.sh` run into the markdown table in `benches/results/peers.md`. [`echo`] is the
//! minimal echo backend used until `tidegate echo-backend` exists, and by this crate's tests.

pub mod echo;
pub mod endpoint;
pub mod error;
pub mod load;
pub mod procstat;
pub mod table;

pub use error::Error;
