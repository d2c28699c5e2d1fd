//! Scenario 6, **descriptor exhaustion** (today's `ulimit -n 64` test, under load): the proxy
//! runs with `ulimit -n 1024`; 200 established WebSockets echo once a second each (400
//! descriptors), then a burst tries to open 600 more — 1,200 descriptors, past the limit — and
//! holds what it gets for a few seconds; then the burst closes and 20 new WebSockets open.
//!
//! Pass: past the limit new connections are refused cleanly — a 503, a reset, or a wait in the
//! accept queue that the client gives up on; never a 101 without a working tunnel, never a
//! healthy backend ejected — and the refusals are counted; the established WebSockets drop and
//! stall nothing; the proxy is still running; after the burst closes the proxy's counts equal
//! the sockets at the backends (200), and 20 new WebSockets open and echo (220 = 220).

use std::time::Duration;

use tidegate_tools::load::burst;
use tidegate_tools::load::held::{self, Held};

use super::{ECHO_P99_BUDGET, count, echo_backends, human, human_us, until_exact};
use crate::soak::proxy::{ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome, truth};

/// The proxy's open-file limit.
const NOFILE: u64 = 1_024;
/// Established WebSockets.
const HELD: usize = 200;
/// WebSockets the burst tries to open.
const BURST: usize = 600;
/// New WebSockets after recovery.
const AFTER: usize = 20;

/// Runs the exhaustion.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    let (_backends, addrs) = echo_backends(ctx, "descriptors backend", 2).await?;
    let config = ConfigFile::new(&addrs, 2_000).with("queue_timeout: 0s");
    let mut proxy = Proxy::start(ctx, "descriptors-proxy", &config, Some(NOFILE)).await?;
    let echoing = held::Config {
        connections: HELD,
        interval: Some(Duration::from_secs(1)),
        size: 32,
        concurrency: 32,
    };
    let held = Held::open(&proxy.endpoint(), &echoing).await?;
    held.window();
    let burst = burst::run(
        &proxy.endpoint(),
        &burst::Config {
            attempts: BURST,
            concurrency: 64,
            limit: Duration::from_secs(5),
        },
    )
    .await;
    let fds_full = truth::descriptors(proxy.pid())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = held.window();
    let counts_during = held.counts();
    let opened = burst.opened.len();
    let failures = burst.failures.clone();
    burst.close().await;
    let exact = until_exact(&proxy, &addrs, Duration::from_secs(15), |c| {
        c.kernel.iter().sum::<u64>() == HELD as u64
    })
    .await;
    let more = Held::open(
        &proxy.endpoint(),
        &held::Config {
            connections: AFTER,
            ..echoing
        },
    )
    .await;
    let recovered = match &more {
        Ok(_) => until_exact(&proxy, &addrs, Duration::from_secs(10), |c| {
            c.kernel.iter().sum::<u64>() == (HELD + AFTER) as u64
        })
        .await
        .is_ok(),
        Err(_) => false,
    };
    let m = proxy.metrics().await?;
    let running = proxy.running();
    let (counts, _) = held.close().await;
    if let Ok(more) = more {
        more.close().await;
    }

    let accept_errors = m.get("tidegate_accept_errors_total{listener=\"traffic\"}");
    let no_fd = m.get("tidegate_rejected_connections_total{reason=\"out_of_descriptors\"}");
    let ejected: f64 = addrs
        .iter()
        .map(|a| {
            m.get(&format!(
                "tidegate_backend_connect_failures_total{{backend=\"{a}\"}}"
            ))
        })
        .sum();
    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "ulimit -n {NOFILE}; {HELD} established WebSockets; a burst of {BURST} more; {} descriptors in use at the limit",
            count(fds_full)
        ),
    ));
    out.push(Figure::check(
        "past the limit: refused cleanly",
        format!(
            "{opened} of the burst opened and echoed; refused {:?}, {} reset or closed, {} gave up waiting (5 s); \
             counted: {accept_errors} failed accepts, {no_fd} 503 out_of_descriptors; {ejected} backend connect failures",
            failures.refused, failures.failed, failures.timed_out
        ),
        "some refused, every opened one echoes, refusals counted, no backend ejected, proxy running",
        failures.total() > 0
            && opened + failures.total() as usize == BURST
            && accept_errors + no_fd >= 1.0
            && ejected == 0.0
            && running,
    ));
    out.push(Figure::check(
        "open ones keep working",
        format!(
            "p99 {} at the limit; {} dropped, {} overdue, {} sent, {} echoed",
            human_us(during.p99_us),
            counts_during.dropped,
            counts_during.overdue,
            count(counts.sent),
            count(counts.echoed)
        ),
        &format!("0 dropped, 0 overdue, p99 ≤ {}", human(ECHO_P99_BUDGET)),
        counts.dropped == 0
            && counts.overdue == 0
            && counts.sent == counts.echoed
            && during.p99_us <= ECHO_P99_BUDGET.as_secs_f64() * 1e6,
    ));
    out.push(Figure::check(
        "counts exact after recovery",
        format!(
            "{}; then {AFTER} new WebSockets: {}",
            match &exact {
                Ok(d) => format!(
                    "proxy = sockets = {HELD} {} after the burst closed",
                    human(*d)
                ),
                Err(e) => e.to_string(),
            },
            if recovered {
                format!("opened, proxy = sockets = {}", HELD + AFTER)
            } else {
                "not served".to_owned()
            }
        ),
        "exact, and new WebSockets served again",
        exact.is_ok() && recovered,
    ));
    Ok(out)
}
