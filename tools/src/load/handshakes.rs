//! Proxy CPU per WebSocket upgrade: `concurrency` workers loop open → clean close until the
//! duration or the count cap is reached (or, with [`run_until`], a stop signal), and the proxy's
//! CPU time over the run is divided by the upgrades completed. Each open (TCP connect to 101)
//! is also timed.

use super::{
    CLOSE_LIMIT, Error,
    endpoint::{self, Endpoint},
    latency, procstat,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// A worker gives up after this many failures in a row (the target is down or refusing).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long to keep opening connections.
    pub duration: Duration,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Upper bound on handshakes started, whatever the duration.
    pub max: u64,
    /// The proxy process whose CPU time is read, if any.
    pub pid: Option<u32>,
}

/// The result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Upgrades that completed and closed cleanly.
    pub handshakes: u64,
    /// Attempts that failed (connect, upgrade or close).
    pub errors: u64,
    /// Wall-clock seconds of the run.
    pub elapsed_s: f64,
    /// `handshakes / elapsed_s`.
    pub per_s: f64,
    /// Proxy CPU seconds (user + system) over the run; `null` without `--pid`.
    pub proxy_cpu_s: Option<f64>,
    /// Proxy CPU milliseconds per 1,000 upgrades; `null` without `--pid`.
    pub cpu_ms_per_1k: Option<f64>,
    /// Median open (TCP connect to 101), milliseconds.
    #[serde(default)]
    pub open_p50_ms: f64,
    /// 99th percentile open, milliseconds.
    #[serde(default)]
    pub open_p99_ms: f64,
    /// Slowest open, milliseconds.
    #[serde(default)]
    pub open_max_ms: f64,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Runs the loop and reports.
pub async fn run(target: &Endpoint, config: &Config) -> Result<Report, Error> {
    run_until(target, config, std::future::pending()).await
}

/// Runs the loop until its duration or count cap, or until `stop` completes, whichever is
/// first; then lets the handshakes in flight finish and reports.
pub async fn run_until(
    target: &Endpoint,
    config: &Config,
    stop: impl Future<Output = ()>,
) -> Result<Report, Error> {
    let counters = Arc::new(Counters::default());
    let times = Arc::new(Mutex::new(latency::new_histogram()));
    let started = Instant::now();
    let deadline = started + config.duration;
    let work = async {
        let workers: Vec<_> = (0..config.concurrency.max(1))
            .map(|_| {
                let (c, t) = (Arc::clone(&counters), Arc::clone(&times));
                tokio::spawn(worker(target.clone(), deadline, config.max, c, t))
            })
            .collect();
        tokio::pin!(stop);
        let all = futures_util::future::join_all(workers);
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => {}
            () = &mut stop => {
                counters.stop.store(true, Ordering::Release);
                all.await;
            }
        }
        Ok(())
    };
    let ((), cpu) = procstat::cpu_during(config.pid, work).await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let handshakes = counters.ok.load(Ordering::Relaxed);
    let t = times.lock().unwrap_or_else(|p| p.into_inner());
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(Report {
        handshakes,
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed_s,
        per_s: handshakes as f64 / elapsed_s,
        proxy_cpu_s: cpu,
        cpu_ms_per_1k: cpu.map(|s| s * 1e3 * 1e3 / handshakes.max(1) as f64),
        open_p50_ms: ms(t.value_at_quantile(0.5)),
        open_p99_ms: ms(t.value_at_quantile(0.99)),
        open_max_ms: ms(t.max()),
    })
}

/// One worker: claims a slot under `max`, opens, closes; stops at the deadline or when told.
async fn worker(
    target: Endpoint,
    deadline: Instant,
    max: u64,
    counters: Arc<Counters>,
    times: Arc<Mutex<Histogram<u64>>>,
) {
    let mut consecutive_errors = 0;
    while Instant::now() < deadline
        && !counters.stop.load(Ordering::Acquire)
        && counters.started.fetch_add(1, Ordering::Relaxed) < max
    {
        match once(&target).await {
            Ok(opened) => {
                let ns = (opened.as_nanos() as u64).clamp(1, latency::MAX_NS);
                times
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(ns);
                counters.ok.fetch_add(1, Ordering::Relaxed);
                consecutive_errors = 0;
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                consecutive_errors += 1;
                if consecutive_errors == MAX_CONSECUTIVE_ERRORS {
                    eprintln!(
                        "wsbench handshakes: worker stops after {consecutive_errors} errors; last: {e}"
                    );
                    return;
                }
            }
        }
    }
}

/// One open and clean close; returns how long the open took.
async fn once(target: &Endpoint) -> Result<Duration, Error> {
    let start = Instant::now();
    let ws = target.connect(endpoint::small_config()).await?;
    let opened = start.elapsed();
    endpoint::close(ws, CLOSE_LIMIT).await?;
    Ok(opened)
}
