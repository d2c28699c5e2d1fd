//! Proxy CPU per WebSocket upgrade: `concurrency` workers loop open → clean close until the
//! duration or the count cap is reached, and the proxy's CPU time over the run is divided by
//! the upgrades completed.

use super::{
    CLOSE_LIMIT, Error,
    endpoint::{self, Endpoint},
    procstat,
};
use serde::{Deserialize, Serialize};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
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
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

/// Runs the loop and reports.
pub async fn run(target: &Endpoint, config: &Config) -> Result<Report, Error> {
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + config.duration;
    let work = async {
        let workers: Vec<_> = (0..config.concurrency.max(1))
            .map(|_| {
                tokio::spawn(worker(
                    target.clone(),
                    deadline,
                    config.max,
                    counters.clone(),
                ))
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
        Ok(())
    };
    let ((), cpu) = procstat::cpu_during(config.pid, work).await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let handshakes = counters.ok.load(Ordering::Relaxed);
    Ok(Report {
        handshakes,
        errors: counters.errors.load(Ordering::Relaxed),
        elapsed_s,
        per_s: handshakes as f64 / elapsed_s,
        proxy_cpu_s: cpu,
        cpu_ms_per_1k: cpu.map(|s| s * 1e3 * 1e3 / handshakes.max(1) as f64),
    })
}

/// One worker: claims a slot under `max`, opens, closes; stops at the deadline.
async fn worker(target: Endpoint, deadline: Instant, max: u64, counters: Arc<Counters>) {
    let mut consecutive_errors = 0;
    while Instant::now() < deadline && counters.started.fetch_add(1, Ordering::Relaxed) < max {
        match once(&target).await {
            Ok(()) => {
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

async fn once(target: &Endpoint) -> Result<(), Error> {
    let ws = target.connect(endpoint::small_config()).await?;
    endpoint::close(ws, CLOSE_LIMIT).await
}
