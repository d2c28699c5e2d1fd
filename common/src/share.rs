//! Sharing every backend's cap between edge replicas, so that live + pending connections on a
//! backend never exceed its cap summed over all replicas, while admission stays one local
//! compare-and-swap.
//!
//! Each replica holds a **share** of every backend's cap; its table admits a connection only
//! below `min(cap, share)` (`super::table::backend`, one atomic word with the occupied count).
//! The invariant is `Σ shares ≤ cap` over every replica that exists. Shares move in three ways
//! only, each safe under lost, late, duplicated and reordered messages:
//!
//! - **grant**: a replica lowers its own share first (never below what it occupies, atomically
//!   with admissions) and adds the amount to a cumulative counter addressed to one recipient's
//!   ledger; the recipient adds what the counter grew by since it last looked. A counter can be
//!   seen late or twice, never counted twice; tokens in flight belong to nobody.
//! - **claim**: tokens that belong to nobody — a new backend, a raised cap, the share of a
//!   replica dropped after `peer_timeout` — are created by exactly one replica, the *claimer*
//!   (the smallest incarnation alive), and only when it can bound every other replica's
//!   holding: a report from every member it knows, each listing no member it does not know,
//!   each newer than what the others have seen of it. Then `cap − (Σ reported shares + tokens
//!   in flight)` is free, and it takes that.
//! - **destroy**: a replica may always lower its own share; the claimer does when the sum is
//!   above the cap (a cap lowered, two partitions merged).
//!
//! Where shares go — toward the arrivals — is policy, not safety: every replica computes the
//! same targets from the same reports (half of the free slots split evenly, half by arrival
//! rate and queue) and gives its excess to the members below target. When upgrades wait in a
//! replica's queue, it and the peers that can give bring their ticks forward, so the share
//! comes within a round trip (`node::early`).
//!
//! The exception: a replica that cannot be heard for `peer_timeout` is taken for gone and its
//! share is claimed; if it is alive and partitioned, it keeps serving what it holds, and two
//! sides may then each fill the cap. When it hears that it was dropped, it starts again as a
//! new member with a share equal to what it occupies, and the surplus drains as its
//! connections close.
//!
//! The pieces: [`report`] (what a replica sends), [`wire`] (its compact encoding), [`node`] (one
//! replica's state machine, pure, time passed in), and [`sim`] (a cluster of nodes over a lossy,
//! reordering network, for the property tests and the benchmark).
//! `docs/architecture.md`, "One edge across replicas", tells the whole story.

pub mod node;
pub mod report;
pub mod sim;
pub mod wire;

pub use node::{Local, Node, Settings, Slots};
pub use report::Report;

/// A replica's incarnation: drawn at random when it starts (or starts again after being
/// dropped), so a restarted replica is a new member and its old ledger can never be reused.
pub type MemberId = u64;
