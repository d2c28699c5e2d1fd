//! The traffic listener's open connections, and the fast-path WebSockets among them that the
//! proxy can ask to close.
//!
//! Two things are kept. Every connection being served holds an [`Open`] guard: the drain waits
//! until none is left ([`Connections::wait_until_none_open`]) and counts what it cuts. Every
//! relayed WebSocket is [`Tracked`]: a [`Signal`] in a slab, with the backend it is on, so the
//! drain can ask the next *n* of them to close (spreading the closes out), a drained backend can
//! ask all of its own, and the end of the grace period can cut the rest. A signal costs one
//! small allocation per WebSocket and an atomic load per relay poll; an idle relay waits on no
//! timer of its own for it (see `docs/architecture.md`, "A drain that closes WebSockets
//! properly").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use futures_util::task::AtomicWaker;
use slab::Slab;
use tidegate_common::Backend;
use tokio::sync::Notify;

/// Why the proxy closes a WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The proxy is shutting down (SIGTERM).
    Shutdown,
    /// Its backend was drained and its `drain_grace` ran out.
    BackendDrained,
}

impl Cause {
    /// A bounded label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::BackendDrained => "backend_drained",
        }
    }

    /// The reason sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Shutdown => "proxy shutting down",
            Self::BackendDrained => "backend drained",
        }
    }
}

/// What the proxy asks of one relayed WebSocket now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Relay as usual.
    Relay,
    /// Close it properly: a close frame each way at a frame boundary.
    Close(Cause),
    /// Close the sockets now, without a close frame.
    Cut,
}

// A signal's bits: the cause of a close asked for (kept when a cut follows), and the cut.
const RELAY: u8 = 0;
const CLOSE_SHUTDOWN: u8 = 1;
const CLOSE_BACKEND: u8 = 2;
const CAUSE: u8 = 3;
const CUT: u8 = 4;

/// One WebSocket's line from the proxy to its relay: what is asked, and the relay's waker.
#[derive(Debug, Default)]
pub struct Signal {
    ask: AtomicU8,
    waker: AtomicWaker,
}

impl Signal {
    /// What is asked now.
    pub fn ask(&self) -> Ask {
        ask_of(self.ask.load(Ordering::Acquire))
    }

    /// Why a close was asked for, if one was (also once a cut followed it).
    pub fn close_cause(&self) -> Option<Cause> {
        match ask_of(self.ask.load(Ordering::Acquire) & CAUSE) {
            Ask::Close(cause) => Some(cause),
            Ask::Relay | Ask::Cut => None,
        }
    }

    /// Has `waker` woken when the ask changes, then returns the ask (read after registering,
    /// so a change in between is not missed).
    pub fn register(&self, waker: &Waker) -> Ask {
        self.waker.register(waker);
        self.ask()
    }

    /// Asks for a close (only of a relay asked nothing yet) or a cut (of any); wakes the relay.
    /// Whether the ask changed.
    fn send(&self, ask: Ask) -> bool {
        let new = code_of(ask);
        let changed = if new == RELAY {
            false
        } else if new == CUT {
            self.ask.fetch_or(CUT, Ordering::AcqRel) & CUT == 0
        } else {
            let swap = self
                .ask
                .compare_exchange(RELAY, new, Ordering::AcqRel, Ordering::Acquire);
            swap.is_ok()
        };
        if changed {
            self.waker.wake();
        }
        changed
    }
}

struct Entry {
    signal: Arc<Signal>,
    backend: Arc<Backend>,
}

/// The open connections of the traffic listener.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    none_open: Notify,
    websockets: Mutex<Slab<Entry>>,
    none_tracked: Notify,
    /// What a WebSocket tracked from now on is asked at once (`RELAY`: nothing).
    from_now: AtomicU8,
}

impl Connections {
    /// Counts a connection as open until the guard drops (taken at accept, before the
    /// connection's task first runs, so a drain never misses it).
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(Arc::clone(self))
    }

    /// Connections being served now (every kind: in their head, queued, relayed, on pingora's
    /// path).
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Returns once no connection is open.
    pub async fn wait_until_none_open(&self) {
        until_zero(&self.none_open, || self.open_count()).await;
    }

    /// Tracks a relayed WebSocket on `backend` until the guard drops.
    pub fn track(&self, backend: &Arc<Backend>) -> Tracked<'_> {
        let signal = Arc::new(Signal::default());
        signal.send(ask_of(self.from_now.load(Ordering::Acquire)));
        let entry = Entry {
            signal: Arc::clone(&signal),
            backend: Arc::clone(backend),
        };
        let key = self.websockets().insert(entry);
        Tracked {
            connections: self,
            signal,
            key,
        }
    }

    /// Returns once no WebSocket is tracked (e.g. every cut relay has ended).
    pub async fn wait_until_none_tracked(&self) {
        until_zero(&self.none_tracked, || self.websocket_count()).await;
    }

    /// Relayed WebSockets tracked now.
    pub fn websocket_count(&self) -> usize {
        self.websockets().len()
    }

    /// From now on, every WebSocket tracked is asked `ask` at once (e.g. those whose handshake
    /// was in flight when the drain started closing).
    pub fn ask_from_now(&self, ask: Ask) {
        self.from_now.store(code_of(ask), Ordering::Release);
    }

    /// Asks up to `n` WebSockets that were asked nothing yet to close for `cause`, scanning
    /// keys from `*cursor` on (and moving it past them). Returns how many were asked.
    pub fn close_next(&self, n: usize, cause: Cause, cursor: &mut usize) -> usize {
        let slab = self.websockets();
        let mut asked = 0;
        while asked < n && *cursor < slab.capacity() {
            if let Some(e) = slab.get(*cursor) {
                asked += usize::from(e.signal.send(Ask::Close(cause)));
            }
            *cursor += 1;
        }
        asked
    }

    /// Asks every WebSocket on the backend at `address` to close for `cause`; returns how many
    /// were asked (those already asked are not asked again).
    pub fn close_backend(&self, address: SocketAddr, cause: Cause) -> usize {
        let slab = self.websockets();
        let on = slab.iter().filter(|(_, e)| e.backend.address() == address);
        on.map(|(_, e)| usize::from(e.signal.send(Ask::Close(cause))))
            .sum()
    }

    /// Asks every tracked WebSocket to close its sockets now; returns how many were asked.
    pub fn cut_all(&self) -> usize {
        let slab = self.websockets();
        slab.iter()
            .map(|(_, e)| usize::from(e.signal.send(Ask::Cut)))
            .sum()
    }

    fn websockets(&self) -> MutexGuard<'_, Slab<Entry>> {
        self.websockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Returns once `count()` is 0; `notify` is notified (`notify_waiters`) whenever it becomes 0.
pub(crate) async fn until_zero(notify: &Notify, count: impl Fn() -> usize) {
    loop {
        // Registered before the check, so a notification in between is not missed.
        let notified = notify.notified();
        if count() == 0 {
            return;
        }
        notified.await;
    }
}

fn code_of(ask: Ask) -> u8 {
    match ask {
        Ask::Relay => RELAY,
        Ask::Close(Cause::Shutdown) => CLOSE_SHUTDOWN,
        Ask::Close(Cause::BackendDrained) => CLOSE_BACKEND,
        Ask::Cut => CUT,
    }
}

fn ask_of(code: u8) -> Ask {
    match code {
        _ if code & CUT != 0 => Ask::Cut,
        RELAY => Ask::Relay,
        CLOSE_SHUTDOWN => Ask::Close(Cause::Shutdown),
        CLOSE_BACKEND => Ask::Close(Cause::BackendDrained),
        _ => Ask::Cut,
    }
}

/// A connection counted open; uncounted on drop.
#[must_use = "the connection counts as open only while the guard lives"]
pub struct Open(Arc<Connections>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_open.notify_waiters();
        }
    }
}

/// A relayed WebSocket the proxy can ask to close; untracked on drop.
#[must_use = "the WebSocket is tracked only while the guard lives"]
pub struct Tracked<'a> {
    connections: &'a Connections,
    signal: Arc<Signal>,
    key: usize,
}

impl Tracked<'_> {
    /// What the relay watches.
    pub fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        let mut websockets = self.connections.websockets();
        let _ = websockets.try_remove(self.key);
        if websockets.is_empty() {
            drop(websockets);
            self.connections.none_tracked.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(port: u16) -> Arc<Backend> {
        let table = tidegate_common::BackendTable::new();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        table.set_backends([tidegate_common::BackendSpec {
            address,
            capacity: 10,
            state: tidegate_common::BackendState::Ready,
        }]);
        table.get(address).unwrap()
    }

    #[test]
    fn closes_go_to_the_next_ones_once_and_cuts_override_them() {
        let c = Connections::default();
        let (a, b) = (backend(1), backend(2));
        let tracked: Vec<_> = (0..5)
            .map(|i| c.track(if i < 3 { &a } else { &b }))
            .collect();
        let asks = || tracked.iter().map(|t| t.signal().ask()).collect::<Vec<_>>();
        let close = Ask::Close(Cause::Shutdown);
        let mut cursor = 0;
        assert_eq!(c.close_next(2, Cause::Shutdown, &mut cursor), 2);
        assert_eq!(&asks()[..3], &[close, close, Ask::Relay]);
        let drained = Ask::Close(Cause::BackendDrained);
        assert_eq!(c.close_backend(b.address(), Cause::BackendDrained), 2);
        assert_eq!(asks()[3..], [drained, drained]);
        assert_eq!(
            c.close_next(10, Cause::Shutdown, &mut cursor),
            1,
            "the rest: one"
        );
        assert_eq!(c.close_next(10, Cause::Shutdown, &mut cursor), 0);
        assert_eq!(c.cut_all(), 5);
        assert!(asks().iter().all(|a| *a == Ask::Cut));
        let causes: Vec<_> = tracked.iter().map(|t| t.signal().close_cause()).collect();
        let (s, d) = (Some(Cause::Shutdown), Some(Cause::BackendDrained));
        assert_eq!(
            causes,
            [s, s, s, d, d],
            "the cause of the close outlives the cut"
        );
        drop(tracked);
        assert_eq!(c.websocket_count(), 0);
    }

    #[test]
    fn websockets_tracked_after_the_drain_started_are_asked_at_once() {
        let c = Connections::default();
        c.ask_from_now(Ask::Close(Cause::Shutdown));
        let t = c.track(&backend(1));
        assert_eq!(t.signal().ask(), Ask::Close(Cause::Shutdown));
    }

    #[tokio::test]
    async fn waiting_for_none_open_ends_when_the_last_guard_drops() {
        let c = Arc::new(Connections::default());
        c.wait_until_none_open().await;
        let c2 = Arc::clone(&c);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let held = tokio::spawn(async move {
            let _open = c2.open();
            let _ = rx.await;
        });
        while c.open_count() == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.wait_until_none_open().await }
        });
        tx.send(()).unwrap();
        held.await.unwrap();
        waiter.await.unwrap();
        assert_eq!(c.open_count(), 0);
    }
}
