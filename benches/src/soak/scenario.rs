//! The scenarios, one module each, and what they share: starting echo backends, waiting on a
//! condition with a deadline, and comparing the proxy's counts with the kernel's.
//!
//! Every scenario is `async fn run(ctx: &Context) -> Result<Outcome, Error>`: it starts its own
//! proxy and backends (stopped when their guards drop), measures, and returns its figures with
//! their pass rules. An `Err` means the harness failed; the suite reports it as a failure and
//! goes on with the next scenario.

pub mod descriptors;
pub mod edges;
pub mod hold;
pub mod kills;
pub mod outage;
pub mod reloads;
pub mod slowloris;

pub mod blackhole;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tidegate_tools::load::held::{self, Held};
use tokio::time::Instant;

use super::process::{self, Child};
use super::proxy::{Proxy, State};
use super::{Context, Error, truth};

/// The echo round trip an established WebSocket must stay under (p99) while a fault or hostile
/// load hits the proxy. Loopback round trips are ~0.1 ms; this is a budget for a 2-core
/// machine shared with other work, where a stall of the proxy would show as seconds.
pub const ECHO_P99_BUDGET: Duration = Duration::from_millis(50);

/// How often bounded waits look again.
const POLL: Duration = Duration::from_millis(20);

/// `n` echo backends on free 127.0.0.1 ports, named `<prefix> 0`, `<prefix> 1`, ….
pub async fn echo_backends(
    ctx: &Context,
    prefix: &str,
    n: usize,
) -> Result<(Vec<Child>, Vec<SocketAddr>), Error> {
    let mut children = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    for i in 0..n {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (child, addr) = process::echo_backend(ctx, &format!("{prefix} {i}"), any, None).await?;
        children.push(child);
        addrs.push(addr);
    }
    Ok((children, addrs))
}

/// `connections` WebSockets through `proxy`, each sending a 32-byte message a second and
/// timing its echo: the established load a fault must leave alone.
pub async fn echoing(proxy: &Proxy, connections: usize) -> Result<Held, Error> {
    let config = held::Config {
        connections,
        interval: Some(Duration::from_secs(1)),
        size: 32,
        concurrency: 64,
    };
    Ok(Held::open(&proxy.endpoint(), &config).await?)
}

/// Waits until `check` says yes, looking every 20 ms for at most `limit`; returns how long it
/// took. Errors of `check` end the wait.
pub async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<Duration, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(Error::Timeout(format!("{what} (after {limit:?})")));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The sockets established at each backend, read off the async threads.
pub async fn sockets(backends: &[SocketAddr], netns_of: Option<u32>) -> Result<Vec<u64>, Error> {
    let backends = backends.to_vec();
    tokio::task::spawn_blocking(move || truth::at_backends(&backends, netns_of))
        .await
        .map_err(|e| Error::Child(format!("/proc reader: {e}")))?
}

/// The proxy's live + pending per backend, in the order given.
pub fn occupied(state: &State, backends: &[SocketAddr]) -> Vec<u64> {
    backends.iter().map(|&b| state.occupied(b)).collect()
}

/// The proxy's live count per backend (upgrades done), in the order given.
pub fn live(state: &State, backends: &[SocketAddr]) -> Vec<u64> {
    backends
        .iter()
        .map(|&b| state.backend(b).map_or(0, |r| r.live))
        .collect()
}

/// One comparison of the proxy's counts with the kernel's that means something under churn:
/// the proxy's counts per backend read before and after the sockets. A pending upgrade (the
/// backend connect made or in flight, the 101 not yet relayed) may or may not be an
/// established socket at the backend yet, so the kernel's count must lie between the lower
/// live count and the higher live + pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The proxy's live + pending just before the sockets were read.
    pub before: Vec<u64>,
    /// The sockets established at each backend.
    pub kernel: Vec<u64>,
    /// The proxy's live + pending just after.
    pub after: Vec<u64>,
    /// The lower of the proxy's two live counts (without pending).
    pub live: Vec<u64>,
}

impl Comparison {
    /// Whether each backend's socket count lies between the proxy's lower live count and its
    /// higher live + pending — with no churn, whether they are equal. A proxy count may lead
    /// the kernel's by a connect in flight, never by a connection the kernel no longer has.
    pub fn consistent(&self) -> bool {
        (0..self.kernel.len()).all(|i| {
            let (lo, hi) = self.bounds(i);
            lo <= self.kernel[i] && self.kernel[i] <= hi
        })
    }

    /// How far the kernel's count lies outside the proxy's bounds, at worst.
    pub fn drift(&self) -> u64 {
        (0..self.kernel.len())
            .map(|i| {
                let (lo, hi) = self.bounds(i);
                lo.saturating_sub(self.kernel[i])
                    .max(self.kernel[i].saturating_sub(hi))
            })
            .max()
            .unwrap_or(0)
    }

    fn bounds(&self, i: usize) -> (u64, u64) {
        let lo = self.live[i].min(self.before[i]).min(self.after[i]);
        (lo, self.before[i].max(self.after[i]))
    }
}

/// Reads the proxy's counts, the sockets, and the proxy's counts again.
pub async fn compare(proxy: &Proxy, backends: &[SocketAddr]) -> Result<Comparison, Error> {
    let first = proxy.state().await?;
    let kernel = sockets(backends, None).await?;
    let second = proxy.state().await?;
    let live = live(&first, backends)
        .into_iter()
        .zip(live(&second, backends))
        .map(|(a, b)| a.min(b))
        .collect();
    Ok(Comparison {
        before: occupied(&first, backends),
        kernel,
        after: occupied(&second, backends),
        live,
    })
}

/// Waits until a [`compare`] finds the proxy's counts consistent with the kernel's on every
/// backend and `also` holds for it; returns how long that took.
pub async fn until_exact(
    proxy: &Proxy,
    backends: &[SocketAddr],
    limit: Duration,
    also: impl Fn(&Comparison) -> bool,
) -> Result<Duration, Error> {
    wait_until("the proxy's counts to match the sockets", limit, || async {
        let c = compare(proxy, backends).await?;
        Ok(c.consistent() && also(&c))
    })
    .await
}

/// The least-squares slope of `points` (y per unit of x); 0 for fewer than two points.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), p| {
        (sxy + (p.0 - mx) * (p.1 - my), sxx + (p.0 - mx).powi(2))
    });
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// `1.234 s`, `12 ms` or `250 µs`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// Microseconds as [`human`] text.
pub fn human_us(us: f64) -> String {
    human(Duration::from_secs_f64(us.max(0.0) / 1e6))
}

/// A thousands-separated count.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_and_counts() {
        assert_eq!(human(Duration::from_millis(1234)), "1.23 s");
        assert_eq!(human(Duration::from_micros(12_300)), "12.3 ms");
        assert_eq!(human(Duration::from_micros(250)), "250 µs");
        assert_eq!(count(9900), "9,900");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        assert_eq!(slope(&[(0.0, 1.0)]), 0.0);
    }

    #[test]
    fn a_comparison_brackets_the_kernel_between_two_proxy_readings() {
        let c = |before: Vec<u64>, kernel: Vec<u64>, after: Vec<u64>| Comparison {
            live: before.iter().zip(&after).map(|(b, a)| *b.min(a)).collect(),
            before,
            kernel,
            after,
        };
        assert!(c(vec![5, 7], vec![5, 7], vec![5, 7]).consistent());
        assert!(c(vec![5, 7], vec![6, 7], vec![7, 7]).consistent());
        assert!(c(vec![7, 7], vec![6, 7], vec![5, 7]).consistent());
        let off = c(vec![5, 7], vec![5, 9], vec![5, 8]);
        assert!(!off.consistent());
        assert_eq!(off.drift(), 1);
        // 3 pending on the second backend: its sockets may be anywhere from 7 to 10.
        let pending = Comparison {
            live: vec![5, 7],
            ..c(vec![5, 10], vec![5, 8], vec![5, 10])
        };
        assert!(pending.consistent());
        assert_eq!(c(vec![5, 10], vec![5, 8], vec![5, 10]).drift(), 2);
    }
}
