//! Round-trip latency of small messages at a fixed aggregate rate.
//!
//! Each of C connections sends one message every `C / rate` seconds (start times staggered so
//! the aggregate is smooth). A message carries its send time; the echo's arrival time minus
//! that is recorded in an HDR histogram. The send time is the actual send, not the scheduled
//! tick: tokio's timer has millisecond granularity, which would swamp loopback round trips of
//! tens of microseconds. The achieved `sent` count shows whether the client kept up.

use super::{
    Error, close_all,
    endpoint::{self, Endpoint, Ws},
    open_many,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// How long to wait for echoes still in flight after sending stops.
const DRAIN: Duration = Duration::from_secs(2);
/// The largest latency recorded (longer ones are clamped), in nanoseconds.
pub(super) const MAX_NS: u64 = 60_000_000_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections that share the rate.
    pub connections: usize,
    /// Aggregate messages per second.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Message size in bytes (at least 8: the send time).
    pub size: usize,
}

/// The result; latencies in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Connections used.
    pub connections: usize,
    /// Target aggregate rate, messages/s.
    pub rate: f64,
    /// Messages sent.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// Median round trip.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile (0 in records written before it was reported).
    #[serde(default)]
    pub p999_us: f64,
    /// Slowest round trip.
    pub max_us: f64,
}

/// One connection's results. Round trips are kept as a list and binned once at the end: an
/// HDR histogram per connection (27,648 counters, 221 KB, zeroed on creation) made 5,000
/// connections fault in over a gigabyte at the start of a run and merge 5,000 histograms at its
/// end, and the echoes measured meanwhile waited behind that.
#[derive(Default)]
struct Tally {
    round_trips_ns: Vec<u64>,
    sent: u64,
    received: u64,
}

/// When one connection sends; all instants share one base so send stamps compare across tasks.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    base: Instant,
    first: Instant,
    period: Duration,
    end: Instant,
}

impl Schedule {
    fn new(config: &Config) -> Self {
        let base = Instant::now();
        let first = base + Duration::from_millis(50);
        let period = Duration::from_secs_f64(config.connections as f64 / config.rate.max(0.001));
        Self {
            base,
            first,
            period,
            end: first + config.duration,
        }
    }

    /// Connection `i` of `n` starts `i / n` of a period later, so sends spread evenly.
    fn nth(self, i: usize, n: usize) -> Self {
        Self {
            first: self.first + self.period.mul_f64(i as f64 / n.max(1) as f64),
            ..self
        }
    }
}

/// Opens the connections, runs the paced loop on each, merges the histograms.
pub async fn run(target: &Endpoint, config: &Config) -> Result<Report, Error> {
    let size = config.size.max(8);
    let connect = || target.connect(endpoint::small_config());
    let conns = open_many(config.connections, 64, connect).await?;
    let schedule = Schedule::new(config);
    let n = conns.len();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(paced(ws, schedule.nth(i, n), size)))
        .collect();
    let (mut hist, mut sent, mut received) = (new_histogram(), 0, 0);
    let mut open = Vec::with_capacity(n);
    for task in tasks {
        let (ws, tally) = task
            .await
            .map_err(|_| Error::Protocol("latency task panicked"))??;
        for &ns in &tally.round_trips_ns {
            hist.saturating_record(ns);
        }
        (sent, received) = (sent + tally.sent, received + tally.received);
        open.push(ws);
    }
    close_all(open, 64).await;
    Ok(report(config, &hist, sent, received))
}

fn report(config: &Config, hist: &Histogram<u64>, sent: u64, received: u64) -> Report {
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    Report {
        connections: config.connections,
        rate: config.rate,
        sent,
        received,
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: hist.max() as f64 / 1e3,
    }
}

/// One connection: send on each tick until the end, record each echo, then drain.
async fn paced(mut ws: Ws, at: Schedule, size: usize) -> Result<(Ws, Tally), Error> {
    let mut tick = tokio::time::interval_at(at.first, at.period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut tally = Tally::default();
    let mut sending = true;
    loop {
        let phase_end = if sending { at.end } else { at.end + DRAIN };
        tokio::select! {
            _ = tick.tick(), if sending => {
                ws.send(Message::Binary(stamped(at.base, size))).await?;
                tally.sent += 1;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(data))) => record(&mut tally, at.base, &data)?,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(Error::Protocol("connection closed mid-run")),
            },
            () = tokio::time::sleep_until(phase_end) => {
                if !sending { break; }
                sending = false;
            }
        }
        if !sending && tally.received >= tally.sent {
            break;
        }
    }
    Ok((ws, tally))
}

/// A message of `size` bytes (at least 8) whose first 8 hold nanoseconds since `base`.
pub(super) fn stamped(base: Instant, size: usize) -> Bytes {
    let mut payload = vec![0u8; size];
    payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
    payload.into()
}

fn record(tally: &mut Tally, base: Instant, data: &[u8]) -> Result<(), Error> {
    tally.round_trips_ns.push(round_trip_ns(base, data)?);
    tally.received += 1;
    Ok(())
}

/// The round trip of an echoed [`stamped`] message, in nanoseconds (1 to [`MAX_NS`]).
pub(super) fn round_trip_ns(base: Instant, data: &[u8]) -> Result<u64, Error> {
    let stamp: [u8; 8] = data
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Protocol("echo shorter than 8 bytes"))?;
    let rtt = (base.elapsed().as_nanos() as u64).saturating_sub(u64::from_le_bytes(stamp));
    Ok(rtt.clamp(1, MAX_NS))
}

/// An empty histogram of round trips in nanoseconds, 3 significant digits.
pub(super) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3)
        .expect("constant bounds 1..MAX_NS with 3 digits are valid")
}
