//! The load generator: WebSocket clients on one runtime, bounded in count and time.
//!
//! - [`population`]: clients that follow a connection-count [`profile`], hold their
//!   WebSockets, and come back with jittered backoff when refused or dropped, the way a real
//!   client population does (`tidegate loadgen`, `tidegate demo`).
//! - [`held`]: a fixed set of WebSockets held open, each sending a stamped message every
//!   interval and timing its echo, with live counts of drops and stalls (the soak suite's
//!   steady load); [`burst`]: many opens at once that may not all succeed, sorted by how
//!   they failed; [`slow`]: slowloris clients that drip a request head a byte at a time.
//! - The benchmark scenarios (`wsbench`), each stopping by itself and yielding one [`Outcome`]
//!   that prints as one JSON line:
//!   - [`idle`]: memory per idle proxied WebSocket (proxy RSS delta / connections);
//!   - [`handshakes`]: proxy CPU per 1,000 WebSocket upgrades;
//!   - [`latency`]: round-trip latency of small messages at a fixed aggregate rate;
//!   - [`throughput`]: pipelined 4 KiB echoes; messages/s and proxy CPU per million messages.
//! - [`endpoint`] opens and closes one WebSocket (over [`secure`] TLS for `wss://`); [`procstat`] reads what the process under
//!   test costs from `/proc`.

pub mod burst;
pub mod endpoint;
mod error;
pub mod handshakes;
pub mod held;
pub mod idle;
pub mod latency;
pub mod population;
pub mod procstat;
pub mod profile;
pub mod secure;
pub mod slow;
pub mod throughput;

pub use endpoint::Endpoint;
pub use error::Error;
pub use held::Held;
pub use population::Population;
pub use profile::Profile;

use endpoint::Ws;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use std::{future::Future, time::Duration};

/// One measured result, tagged by scenario (`"mode": "idle"` etc. in JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Outcome {
    /// See [`idle::Report`].
    Idle(idle::Report),
    /// See [`handshakes::Report`].
    Handshakes(handshakes::Report),
    /// See [`latency::Report`].
    Latency(latency::Report),
    /// See [`throughput::Report`].
    Throughput(throughput::Report),
}

impl Outcome {
    /// The outcome as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// How long a clean close may take before the connection is abandoned.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Runs `open` `count` times with at most `concurrency` in flight; fails on the first error.
pub async fn open_many<F, Fut>(count: usize, concurrency: usize, open: F) -> Result<Vec<Ws>, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Ws, Error>>,
{
    let mut opened = Vec::with_capacity(count);
    let mut pending = stream::iter(0..count)
        .map(|_| open())
        .buffer_unordered(concurrency.max(1));
    while let Some(ws) = pending.next().await {
        opened.push(ws?);
    }
    Ok(opened)
}

/// Closes every connection cleanly, `concurrency` at a time; returns how many failed to close.
pub async fn close_all(conns: Vec<Ws>, concurrency: usize) -> usize {
    stream::iter(conns)
        .map(|ws| endpoint::close(ws, CLOSE_LIMIT))
        .buffer_unordered(concurrency.max(1))
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await
}
