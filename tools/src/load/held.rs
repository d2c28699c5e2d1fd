//! A held population: WebSockets opened once and kept open, each sending one small stamped
//! message every `interval` (start times spread evenly over the interval) and timing its echo.
//! It is the steady load of the soak suite (`benches/src/soak/`): long-lived, mostly quiet
//! connections that must be neither dropped nor slowed by whatever else happens to the proxy —
//! faults, reloads, hostile clients.
//!
//! While it runs, [`Held::counts`] says how many are open, how many messages were sent and
//! echoed, how many connections the other side ended, and how many are *stalled*: a connection
//! whose echo is still missing when its next message is due is stalled until the echo arrives
//! (each such tick also counts one *overdue* message), so a stall shows within one interval even
//! if the echo never comes. [`Held::window`] gives the echo latency since the previous call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::endpoint::{self, Endpoint, Ws};
use super::{CLOSE_LIMIT, Error, latency, open_many};

/// How long [`Held::close`] waits for echoes still in flight before closing.
const DRAIN: Duration = Duration::from_secs(10);

/// What the connection tasks are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Send on every tick.
    Talk,
    /// Send nothing more; keep reading echoes.
    Quiet,
    /// Close cleanly.
    Close,
}

/// What to hold.
#[derive(Debug, Clone)]
pub struct Config {
    /// WebSockets to open and hold.
    pub connections: usize,
    /// Each connection sends one message this often; `None`: never (idle connections).
    pub interval: Option<Duration>,
    /// Message size in bytes (at least 8: the send time).
    pub size: usize,
    /// Handshakes in flight at once while opening.
    pub concurrency: usize,
}

/// The population's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// WebSockets open now.
    pub open: u64,
    /// Messages sent since the start.
    pub sent: u64,
    /// Echoes received since the start.
    pub echoed: u64,
    /// Connections ended by the other side (close, reset or error) since the start.
    pub dropped: u64,
    /// Ticks at which the previous message's echo was still missing, since the start.
    pub overdue: u64,
    /// Connections whose echo has been missing for longer than one interval, now.
    pub stalled: u64,
}

/// Echo round trips over some span, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Echoes measured.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        Self {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicU64,
    sent: AtomicU64,
    echoed: AtomicU64,
    dropped: AtomicU64,
    overdue: AtomicU64,
    stalled: AtomicU64,
    /// Messages sent on open connections whose echo has not come back.
    in_flight: AtomicU64,
}

/// Round trips since the last window, and over the whole run.
struct Histograms {
    window: Histogram<u64>,
    all: Histogram<u64>,
}

/// What one connection task shares with the others.
#[derive(Clone)]
struct Ledger {
    counters: Arc<Counters>,
    histograms: Arc<Mutex<Histograms>>,
    base: Instant,
    size: usize,
}

/// A running held population. Dropping it without [`Held::close`] aborts every connection.
pub struct Held {
    ledger: Ledger,
    phase: watch::Sender<Phase>,
    tasks: Vec<JoinHandle<()>>,
}

impl Held {
    /// Opens `config.connections` WebSockets (failing on the first that cannot be opened) and
    /// starts their message loops.
    pub async fn open(target: &Endpoint, config: &Config) -> Result<Held, Error> {
        let connect = || target.connect(endpoint::small_config());
        let conns = open_many(config.connections, config.concurrency, connect).await?;
        let ledger = Ledger {
            counters: Arc::default(),
            histograms: Arc::new(Mutex::new(Histograms {
                window: latency::new_histogram(),
                all: latency::new_histogram(),
            })),
            base: Instant::now(),
            size: config.size.max(8),
        };
        let (phase, phases) = watch::channel(Phase::Talk);
        let n = conns.len().max(1);
        let start = Instant::now() + Duration::from_millis(50);
        let tasks = conns
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                // Connection i first sends i/n of an interval after the start.
                let ticks = config
                    .interval
                    .map(|every| (start + every.mul_f64(i as f64 / n as f64), every));
                ledger.counters.open.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(converse(ws, ticks, ledger.clone(), phases.clone()))
            })
            .collect();
        Ok(Held {
            ledger,
            phase,
            tasks,
        })
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let c = &self.ledger.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        Counts {
            open: get(&c.open),
            sent: get(&c.sent),
            echoed: get(&c.echoed),
            dropped: get(&c.dropped),
            overdue: get(&c.overdue),
            stalled: get(&c.stalled),
        }
    }

    /// Echo latency since the previous call (or the start).
    pub fn window(&self) -> Latency {
        let mut h = self.ledger.histograms();
        let window = Latency::of(&h.window);
        h.window.reset();
        window
    }

    /// Echo latency since the start.
    pub fn overall(&self) -> Latency {
        Latency::of(&self.ledger.histograms().all)
    }

    /// Stops sending, waits up to 10 s for the echoes in flight, closes every connection
    /// cleanly, and returns the final counters and the latency over the whole run.
    pub async fn close(mut self) -> (Counts, Latency) {
        let _ = self.phase.send(Phase::Quiet);
        let deadline = Instant::now() + DRAIN;
        // A send that passed its phase check just before the change still gets counted.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.ledger.counters.in_flight.load(Ordering::Acquire) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.phase.send(Phase::Close);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        (self.counts(), self.overall())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Ledger {
    fn histograms(&self) -> std::sync::MutexGuard<'_, Histograms> {
        self.histograms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, data: &[u8]) -> Result<(), Error> {
        let rtt = latency::round_trip_ns(self.base, data)?;
        let mut h = self.histograms();
        h.window.saturating_record(rtt);
        h.all.saturating_record(rtt);
        drop(h);
        self.counters.echoed.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// One connection's state between ticks.
#[derive(Default)]
struct Conversation {
    /// Messages sent whose echo has not come back.
    outstanding: u64,
    /// Counted in `stalled` now.
    stalled: bool,
}

impl Conversation {
    fn tick(&mut self, c: &Counters) {
        if self.outstanding > 0 {
            c.overdue.fetch_add(1, Ordering::AcqRel);
            if !std::mem::replace(&mut self.stalled, true) {
                c.stalled.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.outstanding += 1;
        c.in_flight.fetch_add(1, Ordering::AcqRel);
        c.sent.fetch_add(1, Ordering::AcqRel);
    }

    fn echoed(&mut self, c: &Counters) {
        if self.outstanding > 0 {
            self.outstanding -= 1;
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        if self.outstanding == 0 && std::mem::take(&mut self.stalled) {
            c.stalled.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn end(&mut self, c: &Counters) {
        c.in_flight
            .fetch_sub(std::mem::take(&mut self.outstanding), Ordering::AcqRel);
        if std::mem::take(&mut self.stalled) {
            c.stalled.fetch_sub(1, Ordering::AcqRel);
        }
        c.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection: send on each tick and time each echo; when told, stop sending, then close.
async fn converse(
    mut ws: Ws,
    ticks: Option<(Instant, Duration)>,
    ledger: Ledger,
    mut phase: watch::Receiver<Phase>,
) {
    let counters = Arc::clone(&ledger.counters);
    let mut talk = Conversation::default();
    let mut tick = ticks.map(|(first, every)| {
        let mut t = tokio::time::interval_at(first, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    });
    let ended_by_peer = loop {
        let talking = *phase.borrow_and_update() == Phase::Talk;
        if *phase.borrow() == Phase::Close {
            break false;
        }
        tokio::select! {
            () = next_tick(&mut tick), if talking => {
                // The tick may have won the race against a phase change.
                if *phase.borrow() != Phase::Talk {
                    continue;
                }
                talk.tick(&counters);
                let payload = latency::stamped(ledger.base, ledger.size);
                if ws.send(Message::Binary(payload)).await.is_err() {
                    break true;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if ledger.record(&data).is_ok() {
                        talk.echoed(&counters);
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break true,
            },
            changed = phase.changed() => if changed.is_err() {
                break false;
            },
        }
    };
    if ended_by_peer {
        counters.dropped.fetch_add(1, Ordering::AcqRel);
    } else {
        let _ = endpoint::close(ws, CLOSE_LIMIT).await;
    }
    talk.end(&counters);
}

/// The next tick, or never for an idle connection.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => drop(t.tick().await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo;

    #[tokio::test]
    async fn holds_echoes_and_notices_a_server_side_close() {
        let (listener, stats) = echo::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(echo::serve(
            listener,
            Arc::clone(&stats),
            std::future::pending(),
        ));
        let target = Endpoint::parse(&format!("ws://{addr}/")).unwrap();
        let config = Config {
            connections: 4,
            interval: Some(Duration::from_millis(20)),
            size: 16,
            concurrency: 4,
        };
        let held = Held::open(&target, &config).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while held.counts().echoed < 20 {
            assert!(Instant::now() < deadline, "{:?}", held.counts());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(held.window().count >= 20);
        stats.close_connections(1);
        while held.counts().dropped < 1 {
            assert!(Instant::now() < deadline, "{:?}", held.counts());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (counts, overall) = held.close().await;
        assert_eq!((counts.open, counts.dropped, counts.stalled), (0, 1, 0));
        assert!(counts.echoed + 1 >= counts.sent, "{counts:?}");
        assert!(overall.count == counts.echoed && overall.p99_us > 0.0);
    }
}
