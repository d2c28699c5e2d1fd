//! Memory per idle proxied WebSocket: open C connections, let the proxy settle, and read how
//! much its resident memory grew.
//!
//! Steps are cumulative: `--connections 1000,5000,9900` opens 1,000, measures, opens 4,000 more,
//! measures, and so on, all in one proxy process, so the slope between steps is the marginal
//! cost of a connection. `rss_before_kb` is read once, after a small warm-up (a few connections
//! that each echo one message and close) so that lazily built state is not charged to the first
//! step.

use super::{
    Error, close_all,
    endpoint::{self, Endpoint, Ws},
    open_many, procstat,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Cumulative connection counts to measure at, ascending.
    pub steps: Vec<usize>,
    /// The proxy process whose RSS is read.
    pub pid: u32,
    /// How long to wait after the last connection of a step opened before reading RSS.
    pub hold: Duration,
    /// Handshakes in flight at once while opening.
    pub concurrency: usize,
    /// Connections opened, echoed on and closed before `rss_before_kb` is read.
    pub warmup: usize,
}

/// One step's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Idle WebSockets open through the proxy when `rss_after_kb` was read.
    pub connections: usize,
    /// Proxy RSS after the warm-up, before any measured connection, in KiB.
    pub rss_before_kb: u64,
    /// Proxy RSS with `connections` open, after the hold, in KiB.
    pub rss_after_kb: u64,
    /// `(rss_after_kb - rss_before_kb) * 1024 / connections`, in bytes.
    pub bytes_per_conn: f64,
    /// Seconds it took to open this step's new connections.
    pub open_s: f64,
}

/// Runs the steps, calling `emit` after each; closes everything at the end.
pub async fn run(
    target: &Endpoint,
    config: &Config,
    mut emit: impl FnMut(Report),
) -> Result<(), Error> {
    warm_up(target, config.warmup).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kb = procstat::rss_kb(config.pid)?;
    let mut held: Vec<Ws> = Vec::new();
    for &step in &config.steps {
        let started = Instant::now();
        let more = step.saturating_sub(held.len());
        held.extend(
            open_many(more, config.concurrency, || {
                target.connect(endpoint::small_config())
            })
            .await?,
        );
        let open_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(config.hold).await;
        let rss_after_kb = procstat::rss_kb(config.pid)?;
        emit(Report {
            connections: held.len(),
            rss_before_kb,
            rss_after_kb,
            bytes_per_conn: per_conn(rss_before_kb, rss_after_kb, held.len()),
            open_s,
        });
    }
    let failed = close_all(held, config.concurrency).await;
    if failed > 0 {
        eprintln!("wsbench idle: {failed} connections did not close cleanly");
    }
    Ok(())
}

/// Opens `count` connections, echoes one small message on each, and closes them.
async fn warm_up(target: &Endpoint, count: usize) -> Result<(), Error> {
    let mut conns = open_many(count, count, || target.connect(endpoint::small_config())).await?;
    for ws in &mut conns {
        ws.send(Message::Binary(Bytes::from_static(b"warm-up")))
            .await?;
        match ws.next().await {
            Some(Ok(Message::Binary(_))) => {}
            _ => return Err(Error::Protocol("warm-up message was not echoed")),
        }
    }
    close_all(conns, count).await;
    Ok(())
}

/// Bytes of RSS growth per connection (negative growth reads as 0).
fn per_conn(before_kb: u64, after_kb: u64, conns: usize) -> f64 {
    after_kb.saturating_sub(before_kb) as f64 * 1024.0 / conns.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::per_conn;

    #[test]
    fn per_conn_is_bytes_per_connection() {
        assert_eq!(per_conn(1000, 2000, 1024), 1000.0);
        assert_eq!(per_conn(2000, 1000, 10), 0.0);
        assert_eq!(per_conn(0, 10, 0), 10240.0);
    }
}
