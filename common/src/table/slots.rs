//! The wake-up signal behind the connection queue: "a slot may have freed up".
//!
//! Waiters are woken one at a time, oldest first (tokio's `Notify::notify_one` is FIFO), when a
//! reservation is released, and all at once when capacity grows (a backend added, a cap raised,
//! a backend back to ready). Releasing costs one atomic load when nobody waits. The peer
//! exchange is told when an upgrade joins the queue ([`SlotSignal::joined`]): a share a peer
//! gives may serve it.

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Shared by a table and all its backends.
#[derive(Debug, Default)]
pub struct SlotSignal {
    notify: Notify,
    joined: Notify,
    waiting: AtomicUsize,
}

impl SlotSignal {
    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub(crate) fn slot_freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    pub(crate) fn capacity_changed(&self) {
        self.notify.notify_waiters();
    }

    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }

    /// Completes once an upgrade has joined the queue since the last time it completed (one
    /// waiter: the peer exchange).
    pub async fn joined(&self) {
        self.joined.notified().await;
    }

    /// Counts the caller as waiting until the returned guard drops.
    pub(crate) fn enter(&self) -> WaitTicket<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.joined.notify_one();
        WaitTicket {
            signal: self,
            served: false,
        }
    }
}

/// One place in the queue.
pub(crate) struct WaitTicket<'a> {
    signal: &'a SlotSignal,
    served: bool,
}

impl WaitTicket<'_> {
    /// The waiter got its slot: no need to pass a wake-up on.
    pub(crate) fn served(mut self) {
        self.served = true;
    }
}

impl Drop for WaitTicket<'_> {
    fn drop(&mut self) {
        self.signal.waiting.fetch_sub(1, Ordering::SeqCst);
        if !self.served {
            // A wake-up meant for us may have arrived as we timed out: pass it on, so a freed
            // slot never sits unused while others wait. A spurious wake-up costs one retry.
            self.signal.notify.notify_one();
        }
    }
}
