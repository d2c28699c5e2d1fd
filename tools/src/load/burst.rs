//! A burst of WebSocket opens that may not all succeed: tries to open `attempts` WebSockets,
//! each within a time limit, keeps those that open (after checking that each one echoes), and
//! sorts the rest by how they failed — refused with a status (503 when the proxy has no room
//! or no descriptors), failed (connect or handshake error, reset), or timed out.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use super::endpoint::{self, Endpoint, Ws};
use super::{Error, close_all};

/// What to try.
#[derive(Debug, Clone)]
pub struct Config {
    /// WebSockets to try to open.
    pub attempts: usize,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Longest one attempt (connect, upgrade and one echo) may take.
    pub limit: Duration,
}

/// How the attempts ended, failures only (the opened ones are in [`Burst::opened`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failures {
    /// Upgrades answered with a non-101 status, by status.
    pub refused: BTreeMap<u16, u64>,
    /// Connects, handshakes or echoes that failed otherwise (reset, closed, protocol error).
    pub failed: u64,
    /// Attempts that did not finish within the limit.
    pub timed_out: u64,
}

impl Failures {
    /// Every failed attempt.
    pub fn total(&self) -> u64 {
        self.refused.values().sum::<u64>() + self.failed + self.timed_out
    }
}

/// The result of a burst: the open WebSockets and the failures.
pub struct Burst {
    /// WebSockets that opened and echoed one message.
    pub opened: Vec<Ws>,
    /// The others.
    pub failures: Failures,
}

impl Burst {
    /// Closes the opened WebSockets cleanly; returns how many did not close cleanly.
    pub async fn close(self) -> usize {
        close_all(self.opened, 64).await
    }
}

/// Runs the attempts.
pub async fn run(target: &Endpoint, config: &Config) -> Burst {
    let limit = config.limit;
    let results: Vec<Result<Ws, Outcome>> = stream::iter(0..config.attempts)
        .map(|_| async move {
            match tokio::time::timeout(limit, attempt(target)).await {
                Ok(Ok(ws)) => Ok(ws),
                Ok(Err(e)) => Err(e.status().map_or(Outcome::Failed, Outcome::Refused)),
                Err(_) => Err(Outcome::TimedOut),
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let mut burst = Burst {
        opened: Vec::new(),
        failures: Failures::default(),
    };
    for r in results {
        match r {
            Ok(ws) => burst.opened.push(ws),
            Err(Outcome::Refused(code)) => *burst.failures.refused.entry(code).or_default() += 1,
            Err(Outcome::Failed) => burst.failures.failed += 1,
            Err(Outcome::TimedOut) => burst.failures.timed_out += 1,
        }
    }
    burst
}

enum Outcome {
    Refused(u16),
    Failed,
    TimedOut,
}

/// Opens one WebSocket and checks that one message comes back.
async fn attempt(target: &Endpoint) -> Result<Ws, Error> {
    let mut ws = target.connect(endpoint::small_config()).await?;
    ws.send(Message::Binary(Bytes::from_static(b"burst")))
        .await?;
    match ws.next().await {
        Some(Ok(Message::Binary(b))) if b.as_ref() == b"burst" => Ok(ws),
        Some(Err(e)) => Err(e.into()),
        _ => Err(Error::Protocol("the first message was not echoed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo;

    #[tokio::test]
    async fn opens_what_it_can_and_counts_the_rest() {
        let (listener, _stats) = echo::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(echo::serve(listener, _stats, std::future::pending()));
        let config = Config {
            attempts: 5,
            concurrency: 2,
            limit: Duration::from_secs(5),
        };
        let ok = run(&Endpoint::parse(&format!("ws://{addr}/")).unwrap(), &config).await;
        assert_eq!((ok.opened.len(), ok.failures.total()), (5, 0));
        assert_eq!(ok.close().await, 0);

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let none = run(
            &Endpoint::parse(&format!("ws://{closed}/")).unwrap(),
            &config,
        )
        .await;
        assert_eq!((none.opened.len(), none.failures.failed), (0, 5));
    }
}
