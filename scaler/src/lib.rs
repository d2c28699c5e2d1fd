//! tidegate's control plane: scaling policies with time passed in, the baselines they are judged
//! against, and the ws-elastic-sim simulator. No tokio, kube or pingora here: everything is pure
//! and deterministic, so it is table-tested, simulated and benched as is.
//!
//! Where to start reading:
//!
//! - [`policy`]: the [`Policy`] trait, its [`Observation`] input and [`Decision`] output — the
//!   seam the live scaler loop and the simulator share.
//! - [`tidegate`]: tidegate's own policy, explained in one paragraph; its constants live in
//!   [`config::TidegatePolicyConfig`]. It builds on [`history`] (what the live loop feeds once per
//!   second) and [`forecast`] (the seed's least-squares fits, and a median).
//! - [`drain`]: drain-first actuation — which pods to drain, un-drain and remove.
//! - [`baselines`]: Kubernetes HPA v2, Knative KPA, the seed's predictor and the oracles.
//! - [`sim`]: the simulated world, traces, the report and the `tidegate simulate` entry point
//!   ([`sim::cli::SimulateArgs`], [`sim::cli::run`]).
//!
//! The live loop in one picture — observe once per second, decide, actuate:
//!
//! ```
//! use std::time::Duration;
//! use tidegate_scaler::policy::{PodObservation, PodPhase};
//! use tidegate_scaler::tidegate::TidegatePolicy;
//! use tidegate_scaler::{Observation, Policy};
//!
//! let mut policy = TidegatePolicy::new(Default::default());
//! let pods = [PodObservation { id: 1, phase: PodPhase::Ready, connections: Some(900) }; 3];
//! let obs = Observation { pods: &pods, desired: 3, queued: 0, refused: 0 };
//! let now = Duration::from_secs(1);
//! policy.observe(now, &obs);
//! let decision = policy.decide(now, &obs);
//! assert_eq!(decision.replicas, 3);
//! let plan = tidegate_scaler::drain::plan(&pods, decision.replicas, decision.serving.unwrap_or(3), 0);
//! assert_eq!(plan.replicas, 3);
//! println!("{}", decision.reason); // e.g. "hold: forecast 2700 conns at +56s ≤ 0.92×1000×3"
//! ```

pub mod baselines;
pub mod config;
pub mod drain;
mod error;
pub mod forecast;
pub mod history;
pub mod policy;
pub mod rng;
pub mod sim;
pub mod tidegate;

pub use error::Error;
pub use policy::{Decision, Observation, Policy};
