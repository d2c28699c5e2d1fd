//! Taking turns: the work that comes in bursts gives the runtime back in small batches, so that
//! a relay woken by its sockets waits behind a handful of them, not behind the burst. Two such
//! bursts: accepting new connections, and answering and closing the ones refused before they
//! are routed (a bad PROXY header, a failed or timed-out TLS handshake, a slow or bad head).
//!
//! tokio runs ready tasks first in, first out. Without turns, an accept loop puts up to 128
//! new connections (its cooperative budget) in the queue between two polls of an established
//! WebSocket, and 5,000 head timeouts that fire within 200 ms each answer and close at once:
//! the soak's slowloris (`benches/src/soak/scenario/slowloris.rs`) saw established echoes
//! delayed by 80–130 ms in either burst, while the same bursts sent to another proxy process
//! on the same cores left them under 6 ms. HAProxy bounds its accepts the same way
//! (`tune.maxaccept`).

use tokio::sync::{Semaphore, SemaphorePermit};

/// Connections an accept loop takes in a row before it lets other tasks run.
pub const ACCEPT_BATCH: usize = 8;

/// Counts an accept loop's connections and yields after every [`ACCEPT_BATCH`] of them.
#[derive(Debug, Default)]
pub struct AcceptTurns {
    in_a_row: usize,
}

impl AcceptTurns {
    /// Called after each accepted connection has been handed its task.
    pub async fn accepted(&mut self) {
        self.in_a_row += 1;
        if self.in_a_row == ACCEPT_BATCH {
            self.in_a_row = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// The turns refused connections take to be answered and closed (or, without an answer, shut
/// or dropped): as many at once as the traffic listener has workers, the rest waiting parked
/// (not in the run queue) for a turn. A turn is at most a write and a FIN: the answer is short
/// and goes into the socket's empty send buffer, so a client that never reads cannot hold one,
/// each frees within microseconds, and a burst of thousands is still answered within
/// milliseconds of each connection's deadline.
#[derive(Debug)]
pub struct Refusals {
    turns: Semaphore,
}

impl Refusals {
    /// Turns for `workers` worker threads (at least one).
    pub fn new(workers: usize) -> Self {
        Self {
            turns: Semaphore::new(workers.max(1)),
        }
    }

    /// Waits for a turn; it ends when the permit is dropped.
    pub async fn turn(&self) -> SemaphorePermit<'_> {
        // Never closed, so acquiring only waits.
        self.turns
            .acquire()
            .await
            .expect("the refusals' semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn an_accept_loop_yields_once_per_batch() {
        let mut turns = AcceptTurns::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut yielded = Vec::new();
        for i in 1..=3 * ACCEPT_BATCH {
            let mut accepted = pin!(turns.accepted());
            // A yield is one Pending, then done.
            if accepted.as_mut().poll(&mut cx) == Poll::Pending {
                yielded.push(i);
                assert_eq!(accepted.as_mut().poll(&mut cx), Poll::Ready(()));
            }
        }
        assert_eq!(yielded, [ACCEPT_BATCH, 2 * ACCEPT_BATCH, 3 * ACCEPT_BATCH]);
    }

    #[tokio::test]
    async fn refusals_take_turns_as_many_at_once_as_workers() {
        let refusals = Refusals::new(2);
        let (a, b) = (refusals.turn().await, refusals.turn().await);
        let mut third = pin!(refusals.turn());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        drop(a);
        assert!(third.as_mut().poll(&mut cx).is_ready());
        drop(b);
        // No workers still means one turn, never none.
        let none = Refusals::new(0);
        drop(none.turn().await);
    }
}
