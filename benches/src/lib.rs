//! Benchmark support for tidegate: see `benches/README.md` for the figures and how to reproduce
//! them.
//!
//! The load itself comes from `tidegate_tools::load` (the same generator `tidegate loadgen`
//! uses); `wsbench` is its command-line front for `benches/peers.sh`. [`table`] turns the JSON
//! lines of a whole `peers.sh` run into the markdown table in `benches/results/peers.md`.
//! [`soak`] is the fault and soak suite behind `cargo xtask soak` (`src/bin/soak.rs`).

pub mod certs;
pub mod soak;
pub mod table;

pub use table::Error;
