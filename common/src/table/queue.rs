//! Holding a WebSocket upgrade for a slot when every backend is full: a bounded FIFO queue with
//! a deadline, so a short burst is absorbed instead of refused.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::reservation::Reservation;
use super::{BackendTable, NoSlot};

/// How long and how many requests may wait for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    /// The longest a request waits; zero refuses at once when everything is full.
    pub timeout: Duration,
    /// The most requests waiting at once; more are refused at once.
    pub max_waiting: usize,
}

/// Why an upgrade got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No backend takes new connections.
    #[error("no eligible backend")]
    NoBackends,
    /// Everything was full and the queue timeout is zero.
    #[error("every backend is at capacity")]
    Full,
    /// The queue already held `max_waiting` requests.
    #[error("the wait queue is full")]
    QueueFull,
    /// No slot freed up within the queue timeout.
    #[error("no slot freed up within the queue timeout")]
    QueueTimeout,
}

impl Rejected {
    /// A bounded label for metrics.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::NoBackends => "no_backends",
            Self::Full => "full",
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
        }
    }
}

impl BackendTable {
    /// Takes a slot, waiting in FIFO order up to `policy.timeout` while every backend is full.
    /// Requests that find others already waiting join the queue rather than jump it.
    pub async fn reserve(
        &self,
        policy: QueuePolicy,
        exclude: &[SocketAddr],
    ) -> Result<Reservation, Rejected> {
        let slots = self.slots();
        if slots.waiting() == 0 {
            match self.try_reserve(std::time::Instant::now(), exclude) {
                Ok(r) => return Ok(r),
                Err(NoSlot::NoBackends) => return Err(Rejected::NoBackends),
                Err(NoSlot::Full) if policy.timeout.is_zero() => return Err(Rejected::Full),
                Err(NoSlot::Full) => {}
            }
        }
        if slots.waiting() >= policy.max_waiting {
            return Err(Rejected::QueueFull);
        }
        let deadline = Instant::now() + policy.timeout;
        let ticket = slots.enter();
        loop {
            let notified = slots.notify().notified();
            tokio::pin!(notified);
            // Register before looking, so a release between the look and the wait is not missed.
            notified.as_mut().enable();
            match self.try_reserve(std::time::Instant::now(), exclude) {
                Ok(r) => {
                    ticket.served();
                    return Ok(r);
                }
                Err(NoSlot::NoBackends) => return Err(Rejected::NoBackends),
                Err(NoSlot::Full) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Rejected::QueueTimeout);
            }
        }
    }
}
