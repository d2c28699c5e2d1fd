//! The vocabulary tidegate's crates share, and nothing heavy: no pingora, no kube.
//!
//! Where to start:
//! - [`table`]: the backends with their exact live and pending WebSocket counts —
//!   [`table::route`] is the routing rule (least live + pending under the cap),
//!   [`table::reservation`] the count invariant (a slot taken at routing, live on the `101`,
//!   given back on drop whatever path the connection ends on), [`table::queue`] the wait for a
//!   slot when every backend is full.
//! - [`load::LoadSnapshot`]: the copy of the counts that the scaler and the admin API read.
//! - [`share`]: how several edge replicas share every backend's cap — the exchange's report,
//!   its wire format, and one replica's state machine (pure, time passed in), with a simulated
//!   cluster for the property tests and the benchmark.
//! - [`duration`] and [`telemetry`]: config and logging helpers.

pub mod duration;
pub mod load;
pub mod share;
pub mod table;
pub mod telemetry;

pub use load::{BackendLoad, LoadSnapshot};
pub use table::backend::{Backend, BackendState};
pub use table::queue::{QueuePolicy, Rejected};
pub use table::reservation::{InflightRequest, Reservation};
pub use table::{BackendSpec, BackendTable, NoSlot};
