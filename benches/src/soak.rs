//! The fault and soak suite (`cargo xtask soak`): the proxy's promises checked under load,
//! faults and bad input, with the real `tidegate proxy` and `tidegate echo-backend` processes
//! on 127.0.0.1 (and a network namespace where a fault needs a non-loopback address), bounded
//! in time and count, every child stopped by PID on every way out.
//!
//! Where to start:
//! - [`suite`] runs the scenarios named in a [`Plan`] one after the other and writes the report;
//!   [`scenario`] has one module per scenario, each returning [`Figure`]s with a pass rule
//!   evaluated from measured values.
//! - The harness: [`process`] (child processes and their guard), [`proxy`] (the proxy under
//!   test, its config file and its admin API), [`truth`] (what the kernel says: sockets
//!   established on each backend's port, descriptors, memory), [`netns`] (a network namespace
//!   with a backend that can be black-holed), [`apiserver`] (the kube-apiserver tier).
//! - [`report`] and [`plot`] write `benches/results/soak.md` and its SVGs.
//!
//! The clients come from `tidegate_tools::load` (the held population, the reconnecting
//! population, the handshake loop); nothing here opens a WebSocket by itself.

pub mod apiserver;
mod error;
pub mod netns;
pub mod plan;
pub mod plot;
pub mod process;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod suite;
pub mod truth;

pub use error::Error;
pub use plan::Plan;
pub use report::{Figure, Verdict};

use std::path::PathBuf;

/// What every scenario needs: the binary under test, where to put files, the sizes, and what
/// the binary supports.
#[derive(Debug, Clone)]
pub struct Context {
    /// The `tidegate` binary.
    pub tidegate: PathBuf,
    /// A scratch directory for configs and logs (kept when a scenario fails).
    pub work: PathBuf,
    /// Where the report and its plots go.
    pub out: PathBuf,
    /// Scenario sizes and durations.
    pub plan: Plan,
    /// Features of the binary that some scenarios need.
    pub features: proxy::Features,
    /// Directory of `build-kube-apiserver.sh` / `start-kube-apiserver.sh`, when present.
    pub k8s_scripts: Option<PathBuf>,
}

/// Per-scenario results: its figures, and the plots it drew (file names under `out`).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The measured figures, each with its rule and verdict.
    pub figures: Vec<Figure>,
    /// SVG files written, with a caption each.
    pub plots: Vec<(String, String)>,
}

impl Outcome {
    /// Adds a figure.
    pub fn push(&mut self, figure: Figure) {
        self.figures.push(figure);
    }
}
