//! What one replica tells the others every sync interval: its counts, its demand, its view of
//! the membership, its shares, and the grants and acknowledgements that move shares.
//!
//! A report is the same for every recipient (encoded once, pushed to all), and it is *state*,
//! not a diff: every counter in it is cumulative, so a lost report costs latency only and a
//! late or duplicated one is recognised by its `seq` and dropped.

use std::net::SocketAddr;

use crate::table::backend::BackendState;

use super::MemberId;

/// One replica's report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The sender's incarnation (a random id drawn at start; a restart is a new member).
    pub from: MemberId,
    /// Increases with every report of this incarnation.
    pub seq: u64,
    /// The sender's admin port: with the source IP of the push, where to push back.
    pub admin_port: u16,
    /// The sender is shutting down: it takes no new connections and gives its shares back.
    pub leaving: bool,
    /// The sender decides scaling (holds the Lease, or runs the scaler without election): its
    /// drain marks are the ones every replica applies.
    pub leader: bool,
    /// The sender has a backend source of its own (`backends.from_peers` edges copy its list).
    pub has_source: bool,
    /// Upgrades waiting in the sender's queue now.
    pub queued: u32,
    /// Upgrades the sender refused since it started.
    pub refused_total: u64,
    /// The sender's arrival and refusal rates, smoothed by the sender: where the demand is.
    /// Every member weighs the sender by exactly these values (`node::rates`).
    pub rates: Rates,
    /// The members the sender knows, with the newest report it processed from each.
    pub view: Vec<ViewEntry>,
    /// Every backend in the sender's table.
    pub backends: Vec<BackendEntry>,
    /// Shares the sender gave and has not seen acknowledged yet (cumulative per recipient).
    pub grants: Vec<GrantEntry>,
    /// What the sender has received of grants other members still list as unacknowledged.
    pub acks: Vec<AckEntry>,
}

/// A sender's demand, smoothed by the sender and rounded (whole numbers, so that every member
/// computes the same weight from them; `node::rates`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// Upgrades routed or refused per second (time constant 5 s).
    pub arrivals: u32,
    /// Upgrades refused within about the last 2 s, whose clients are about to retry.
    pub refused: u32,
}

/// One member in a sender's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    /// Its incarnation.
    pub member: MemberId,
    /// The `seq` of the newest report of it the sender has processed (0: none yet).
    pub seen: u64,
    /// `true`: heard from within `peer_timeout`. `false`: dropped (gone), and nothing it sends
    /// is accepted any more.
    pub up: bool,
}

/// One backend as the sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendEntry {
    /// The backend.
    pub address: SocketAddr,
    /// Its cap in the sender's config.
    pub capacity: u32,
    /// Its state in the sender's table (a leader's `Draining` is a drain mark).
    pub state: BackendState,
    /// Id of the sender's ledger for this backend (a backend that left the table and came
    /// back gets a new one, so old grants can never be counted twice).
    pub epoch: u32,
    /// The sender's live connections on it.
    pub live: u32,
    /// The sender's pending upgrades on it.
    pub pending: u32,
    /// The sender's share of its cap.
    pub share: u32,
}

/// Share of one backend given by the sender to one member, not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantEntry {
    /// The recipient.
    pub to: MemberId,
    /// Index of the backend in the sender's `backends`.
    pub backend: u32,
    /// The recipient's ledger epoch for that backend the grant is for.
    pub to_epoch: u32,
    /// Total given to that ledger since it began.
    pub given: u64,
    /// How much of it the recipient has acknowledged, as far as the sender knows.
    pub acked: u64,
}

/// What the sender has received from one member on one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckEntry {
    /// The granter.
    pub from: MemberId,
    /// Index of the backend in the sender's `backends` (the ledger the grant went to).
    pub backend: u32,
    /// The granter's ledger epoch the grant came from.
    pub from_epoch: u32,
    /// Total received from that ledger.
    pub received: u64,
}

impl Report {
    /// The sender's view entry of `member`, if it lists it.
    pub fn view_of(&self, member: MemberId) -> Option<&ViewEntry> {
        self.view.iter().find(|v| v.member == member)
    }

    /// The backend at `index` of `backends`.
    pub fn backend(&self, index: u32) -> Option<&BackendEntry> {
        self.backends.get(usize::try_from(index).ok()?)
    }

    /// Live connections over every backend.
    pub fn total_live(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.live)).sum()
    }
}
