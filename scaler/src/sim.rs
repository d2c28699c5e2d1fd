//! ws-elastic-sim: a deterministic simulation (100 ms step, seeded) of a WebSocket service behind
//! tidegate, on which every policy runs side by side; its model is described in
//! `docs/architecture.md`, section "The simulator".
//!
//! - [`trace`]: demand traces (six named generators, CSV files);
//! - [`setup`]: the world's settings and how a policy plugs in;
//! - [`world`]: the world itself (pods, placement, reconnects, ReplicaSet, pipelines);
//! - [`policies`]: the compared policies by id;
//! - [`run`]: runs over policies × seeds on worker threads, and their summaries;
//! - [`report`] and [`plot`]: the markdown table, `summary.json`, `decisions.csv`, SVGs;
//! - [`cli`]: `tidegate simulate`; [`suite`]: the whole suite behind `sim_suite`.

pub mod cli;
mod clients;
pub mod families;
pub mod metrics;
pub mod plot;
mod pods;
pub mod policies;
pub mod report;
pub mod run;
mod sessions;
pub mod setup;
pub mod suite;
pub mod trace;
pub mod world;

pub use metrics::RunMetrics;
pub use policies::PolicyId;
pub use setup::{Pipeline, WorldConfig};
pub use trace::Trace;
