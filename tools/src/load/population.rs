//! A client population: opens and holds WebSockets to follow a connection-count profile, the
//! way real clients would — refused or dropped clients come back with jittered exponential
//! backoff — and optionally prints one line a second (target, open, refused). This is
//! `tidegate loadgen` and the load of `tidegate demo`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use super::Profile;
use super::endpoint::{self, Endpoint};

/// Most handshakes in flight at once.
const MAX_IN_FLIGHT: usize = 64;
/// Controller period.
const TICK: Duration = Duration::from_millis(100);
/// Longest backoff before a refused client tries again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where the clients connect.
    pub target: Endpoint,
    /// The connection-count profile.
    pub profile: Profile,
    /// Length of one pass of the profile; it repeats.
    pub period: Duration,
    /// Stop after this long; `None` runs until the stop signal.
    pub duration: Option<Duration>,
    /// Print a line per second to stdout.
    pub report: bool,
}

/// Counters shared by the controller and the connection tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// WebSockets open now.
    pub open: AtomicU64,
    /// Handshakes in flight now.
    pub connecting: AtomicU64,
    /// Handshakes refused by the proxy (503) since start.
    pub refused: AtomicU64,
    /// Other handshake failures since start.
    pub failed: AtomicU64,
    /// Open WebSockets closed by the other side since start.
    pub dropped: AtomicU64,
    /// Most WebSockets open at once.
    pub peak: AtomicU64,
}

/// A client waiting to retry.
struct Retry {
    at: Instant,
    attempt: u32,
}

/// The running population of clients.
pub struct Population {
    plan: Plan,
    /// `plan.target` and any endpoints added by [`Population::spread_over`], used in turn.
    targets: Vec<Endpoint>,
    next_target: std::sync::atomic::AtomicUsize,
    counters: Arc<Counters>,
    closers: Arc<Mutex<Vec<oneshot::Sender<bool>>>>,
    permits: Arc<Semaphore>,
    retries: Arc<Mutex<Vec<Retry>>>,
}

impl Population {
    /// A population following `plan`.
    pub fn new(plan: Plan) -> Self {
        Self {
            targets: vec![plan.target.clone()],
            next_target: std::sync::atomic::AtomicUsize::new(0),
            plan,
            counters: Arc::default(),
            closers: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            retries: Arc::default(),
        }
    }

    /// Spreads the clients over `more` endpoints besides the plan's target, in turn (several
    /// edges of one cluster, as a load balancer would).
    pub fn spread_over(mut self, more: impl IntoIterator<Item = Endpoint>) -> Self {
        self.targets.extend(more);
        self
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Runs until the plan's duration passes or `stop` resolves; closes every WebSocket.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) -> Arc<Counters> {
        tokio::pin!(stop);
        let start = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        let mut next_report = start + Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stop => break,
            }
            let elapsed = start.elapsed();
            if self.plan.duration.is_some_and(|d| elapsed >= d) {
                break;
            }
            let target = self.plan.profile.target(elapsed, self.plan.period);
            if self.plan.profile.storm_between(
                elapsed.saturating_sub(TICK),
                elapsed,
                self.plan.period,
            ) {
                // Every client loses its connection at once and reconnects with jitter.
                self.close(u64::MAX, true);
            }
            self.steer(target);
            if self.plan.report && Instant::now() >= next_report {
                next_report += Duration::from_secs(1);
                println!("{}", self.line(elapsed, target));
            }
        }
        self.close_all();
        Arc::clone(&self.counters)
    }

    /// One status line.
    pub fn line(&self, elapsed: Duration, target: u64) -> String {
        let c = &self.counters;
        format!(
            "t={:>5}s target={target:>6} open={:>6} connecting={:>4} refused={:>6} failed={:>5} dropped={:>5}",
            elapsed.as_secs(),
            c.open.load(Ordering::Relaxed),
            c.connecting.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
        )
    }

    /// Opens or closes connections towards `target`; refused clients wait out their backoff.
    fn steer(&self, target: u64) {
        let c = &self.counters;
        let open = c.open.load(Ordering::Acquire);
        let connecting = c.connecting.load(Ordering::Acquire);
        let now = Instant::now();
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        if open > target {
            retries.clear();
            self.close(open - target, false);
            return;
        }
        let waiting = retries.len() as u64;
        let wanted = target.saturating_sub(open + connecting + waiting);
        let due: Vec<u32> = {
            let (due, later): (Vec<Retry>, Vec<Retry>) =
                retries.drain(..).partition(|r| r.at <= now);
            *retries = later;
            due.into_iter().map(|r| r.attempt).collect()
        };
        drop(retries);
        for attempt in due
            .into_iter()
            .chain(std::iter::repeat_n(0, wanted as usize))
        {
            if self.permits.available_permits() == 0 {
                self.requeue(attempt, now);
                continue;
            }
            self.connect(attempt);
        }
    }

    fn requeue(&self, attempt: u32, at: Instant) {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Retry { at, attempt });
    }

    /// Closes up to `n` connections; with `reconnect` their clients come back after a backoff.
    fn close(&self, n: u64, reconnect: bool) {
        let mut closers = self.closers.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..n {
            match closers.pop() {
                Some(tx) => drop(tx.send(reconnect)),
                None => break,
            }
        }
    }

    fn close_all(&self) {
        self.close(u64::MAX, false);
    }

    fn connect(&self, attempt: u32) {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return;
        };
        let turn = self.next_target.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        let (target, counters) = (self.targets[turn].clone(), Arc::clone(&self.counters));
        let (closers, retries) = (Arc::clone(&self.closers), Arc::clone(&self.retries));
        counters.connecting.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let result = tokio::time::timeout(
                Duration::from_secs(30),
                target.connect(endpoint::default_config()),
            )
            .await;
            counters.connecting.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
            let ws = match result {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) if e.status() == Some(503) => {
                    counters.refused.fetch_add(1, Ordering::AcqRel);
                    return backoff(&retries, attempt);
                }
                _ => {
                    counters.failed.fetch_add(1, Ordering::AcqRel);
                    return backoff(&retries, attempt);
                }
            };
            hold(ws, &counters, &closers, &retries).await;
        });
    }
}

/// Holds one open WebSocket until told to close or the other side closes it.
async fn hold<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    counters: &Counters,
    closers: &Mutex<Vec<oneshot::Sender<bool>>>,
    retries: &Mutex<Vec<Retry>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tx, rx) = oneshot::channel();
    closers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
    let open = counters.open.fetch_add(1, Ordering::AcqRel) + 1;
    counters.peak.fetch_max(open, Ordering::AcqRel);
    let (mut sink, mut stream) = ws.split();
    let (dropped, reconnect) = tokio::select! {
        told = rx => (false, told.unwrap_or(false)),
        _ = async { while let Some(Ok(_)) = stream.next().await {} } => (true, true),
    };
    // Queue the comeback before the count drops, so the controller never sees a gap to fill.
    if reconnect {
        backoff(retries, 0);
    }
    counters.open.fetch_sub(1, Ordering::AcqRel);
    if dropped {
        counters.dropped.fetch_add(1, Ordering::AcqRel);
    } else {
        use futures_util::SinkExt;
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    }
}

/// Full-jitter exponential backoff: U(0, min(30 s, 1 s · 2^attempt)).
fn backoff(retries: &Mutex<Vec<Retry>>, attempt: u32) {
    let cap = Duration::from_secs(1)
        .saturating_mul(1 << attempt.min(5))
        .min(MAX_BACKOFF);
    let wait = cap.mul_f64(fastrand::f64());
    let at = Instant::now() + wait;
    retries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Retry {
            at,
            attempt: attempt + 1,
        });
}
