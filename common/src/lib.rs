//! The vocabulary tidegate's proxy and scaler share, and nothing heavy: no pingora, no kube.
//!
//! Where to start:
//! - [`table::BackendTable`]: the backends with their exact live and pending WebSocket counts,
//!   and the routing rule (least live + pending under the cap).
//! - [`backend::Reservation`]: the guard that takes a slot at routing, turns live on the
//!   backend's `101` and gives the slot back on drop, whatever path the connection ends on.
//! - [`queue`]: holding an upgrade for a slot, FIFO with a deadline, when every backend is full.
//! - [`load::LoadSnapshot`]: the copy of the counts that the scaler and the admin API read.
//! - [`duration`] and [`telemetry`]: config and logging helpers.

pub mod backend;
pub mod duration;
pub mod load;
pub mod queue;
mod slots;
pub mod table;
pub mod telemetry;

pub use backend::{Backend, BackendState, InflightRequest, Reservation};
pub use load::{BackendLoad, LoadSnapshot};
pub use queue::{QueuePolicy, Rejected};
pub use table::{BackendSpec, BackendTable, NoSlot};
