//! The drain on SIGTERM (`docs/architecture.md`, "A drain that closes WebSockets properly"):
//! `/readyz` answers 503 at once; the traffic listener keeps accepting for `shutdown_delay`,
//! then stops; the grace period starts, and the open WebSockets are asked to close — a 1001
//! close frame each way, at a frame boundary — spread evenly over its first half, so that their
//! reconnects do not arrive all at once; what is still open when it ends is cut and counted. The
//! drain is over as soon as nothing is open.
//!
//! [`Machine`] is the schedule, pure, with time passed in; [`Drain::run`] carries it out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use super::connections::{Ask, Cause, Connections};
use crate::metrics::{self, Error};

/// Longest wait for cut relays to end (they do at their next poll).
const CUT_WAIT: Duration = Duration::from_secs(1);

/// What the drain does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing until `until`, or until the last connection ends if `or_none_open`.
    Wait {
        /// When to step again.
        until: Instant,
        /// Whether the last connection ending is worth stepping early for.
        or_none_open: bool,
    },
    /// `shutdown_delay` is over: stop accepting traffic; the grace period starts.
    StopAccepting,
    /// Ask the next `n` WebSockets to close.
    Close {
        /// How many.
        n: usize,
    },
    /// The grace period is over: cut what is still open.
    Cut,
    /// Nothing is open any more (or it was cut): the drain is over.
    Done,
}

/// The drain's schedule: when to stop accepting, how many closes are due when, when to cut.
#[derive(Clone, Debug)]
pub struct Machine {
    grace_start: Instant,
    grace: Duration,
    accepting: bool,
    /// The WebSockets open when the grace period started: the closes to spread.
    to_close: Option<usize>,
    asked: usize,
    cut: bool,
}

impl Machine {
    /// A drain that started (SIGTERM) at `started`.
    pub fn new(started: Instant, shutdown_delay: Duration, grace_period: Duration) -> Self {
        Self {
            grace_start: started + shutdown_delay,
            grace: grace_period,
            accepting: true,
            to_close: None,
            asked: 0,
            cut: false,
        }
    }

    /// The next step at `now`, with `open` connections being served, `websockets` of them
    /// relayed WebSockets that can be closed.
    pub fn step(&mut self, now: Instant, open: usize, websockets: usize) -> Step {
        if now < self.grace_start {
            let until = self.grace_start;
            return Step::Wait {
                until,
                or_none_open: false,
            };
        }
        if self.accepting {
            self.accepting = false;
            return Step::StopAccepting;
        }
        if self.cut || open == 0 {
            return Step::Done;
        }
        let grace_end = self.grace_start + self.grace;
        if now >= grace_end {
            self.cut = true;
            return Step::Cut;
        }
        let total = *self.to_close.get_or_insert(websockets);
        let due = due(now - self.grace_start, total, self.grace / 2);
        if due > self.asked {
            let n = due - self.asked;
            self.asked = due;
            return Step::Close { n };
        }
        let next = if self.asked < total {
            self.grace_start + offset(self.asked, total, self.grace / 2)
        } else {
            grace_end
        };
        Step::Wait {
            until: next.min(grace_end),
            or_none_open: true,
        }
    }
}

/// When the `i`-th of `n` closes is due after the start of the spread over `spread`: evenly,
/// the first at once, rounded up to the nanosecond (so that [`due`] agrees).
fn offset(i: usize, n: usize, spread: Duration) -> Duration {
    let nanos = (spread.as_nanos() * i as u128).div_ceil(n.max(1) as u128);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many of `n` closes spread over `spread` are due `since` its start.
fn due(since: Duration, n: usize, spread: Duration) -> usize {
    if n == 0 || spread.is_zero() {
        return n;
    }
    let k = since.as_nanos() * n as u128 / spread.as_nanos() + 1;
    usize::try_from(k).map_or(n, |k| k.min(n))
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// WebSockets asked to close.
    pub asked: usize,
    /// Connections still open at the end of the grace period, cut.
    pub cut: usize,
}

/// The drain's shared state: whether it runs (for `/readyz`), whether the traffic listener
/// still accepts, and its metrics.
pub struct Drain {
    draining: AtomicBool,
    accepting_stopped: watch::Sender<bool>,
    gauge: IntGauge,
    cut: IntCounter,
}

impl Drain {
    /// Registers `tidegate_draining` and `tidegate_shutdown_cut_connections_total`.
    pub fn register(registry: &Registry) -> Result<Self, Error> {
        let name = "tidegate_draining";
        let gauge = IntGauge::new(name, "1 while the proxy drains after SIGTERM, else 0.")
            .map_err(|e| Error::new(name, e))?;
        let name = "tidegate_shutdown_cut_connections_total";
        let help = "Connections still open when the shutdown grace period ended, cut.";
        let cut = IntCounter::new(name, help).map_err(|e| Error::new(name, e))?;
        Ok(Self {
            draining: AtomicBool::new(false),
            accepting_stopped: watch::Sender::new(false),
            gauge: metrics::register(registry, "tidegate_draining", gauge)?,
            cut: metrics::register(registry, name, cut)?,
        })
    }

    /// Whether a drain has started (`/readyz` answers 503 from then on).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Turns true when the traffic listener must stop accepting.
    pub fn accepting_stopped(&self) -> watch::Receiver<bool> {
        self.accepting_stopped.subscribe()
    }

    /// Drains `connections` over `shutdown_delay` and `grace_period`; returns once nothing is
    /// open or what was left has been asked to cut.
    pub async fn run(
        &self,
        connections: &Connections,
        shutdown_delay: Duration,
        grace_period: Duration,
    ) -> Summary {
        self.draining.store(true, Ordering::Release);
        self.gauge.set(1);
        let open = connections.open_count();
        info!(
            open,
            ?shutdown_delay,
            ?grace_period,
            "draining: /readyz answers 503"
        );
        let mut machine = Machine::new(Instant::now(), shutdown_delay, grace_period);
        let (mut cursor, mut summary) = (0, Summary::default());
        loop {
            let (open, websockets) = (connections.open_count(), connections.websocket_count());
            match machine.step(Instant::now(), open, websockets) {
                Step::Wait {
                    until,
                    or_none_open,
                } => {
                    tokio::select! {
                        () = sleep_until(until) => {}
                        () = connections.wait_until_none_open(), if or_none_open => {}
                    }
                }
                Step::StopAccepting => {
                    connections.ask_from_now(Ask::Close(Cause::Shutdown));
                    self.accepting_stopped.send_replace(true);
                    info!(
                        open,
                        websockets, "stopped accepting; closing the WebSockets"
                    );
                }
                Step::Close { n } => {
                    summary.asked += connections.close_next(n, Cause::Shutdown, &mut cursor);
                }
                Step::Cut => summary.cut = self.cut(connections, open).await,
                Step::Done => break,
            }
        }
        info!(asked = summary.asked, cut = summary.cut, "drain done");
        summary
    }

    /// Cuts what is still open at the end of the grace period (`open` connections); returns
    /// how many.
    async fn cut(&self, connections: &Connections, open: usize) -> usize {
        self.cut.inc_by(open as u64);
        connections.ask_from_now(Ask::Cut);
        connections.cut_all();
        warn!(open, "grace period over: cutting what is still open");
        // Cut relays end at once; let them count how they ended.
        let ended = connections.wait_until_none_tracked();
        let _ = tokio::time::timeout(CUT_WAIT, ended).await;
        open
    }
}

#[cfg(test)]
mod tests;
