//! Scenario 5, **slowloris**: 5,000 connections each sending a request head one byte a second
//! (`tidegate_tools::load::slow`), while 200 established WebSockets echo one message a second
//! each. The proxy runs with `request_header_timeout` 10 s (5 s in CI).
//!
//! Pass: each slow connection gets a 408 at `request_header_timeout` (not before it, at most
//! 1 s after) and is counted as `header_timeout`; the proxy's descriptors come back to where
//! they were; the established WebSockets drop nothing, stall nothing, and keep their echo p99
//! within the budget while it happens.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_tools::load::slow;
use tokio::time::Instant;

use super::{ECHO_P99_BUDGET, count, echo_backends, human, human_us, wait_until};
use crate::soak::proxy::{ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome, truth};

/// Slow connections.
const SLOW: usize = 5_000;
/// Established WebSockets echoing throughout.
const HELD: usize = 200;
/// Latest a 408 may come after `request_header_timeout`.
const LATE_BY: Duration = Duration::from_secs(1);

/// The slow clients, in a process of their own (this binary's hidden `slow-clients`), so that
/// their 5,000 connections and answers do not share the runtime of the WebSockets whose echo
/// is timed: the figure is then the proxy's (and the machine's), not the measuring client's.
/// The child is killed if this future is dropped.
async fn attack(target: SocketAddr, give_up: Duration) -> Result<slow::Report, Error> {
    let exe = std::env::current_exe().map_err(Error::io("finding this binary".to_owned()))?;
    let out = tokio::process::Command::new(exe)
        .args(["slow-clients", "--target", &target.to_string()])
        .args(["--connections", &SLOW.to_string(), "--every-ms", "1000"])
        .args(["--concurrency", "500", "--give-up-ms"])
        .arg(give_up.as_millis().to_string())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::Spawn {
            what: "slow clients".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Child(format!(
            "slow clients exited with {}",
            out.status
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Child(format!("slow clients' report: {e}")))
}

/// Runs the slowloris.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    let timeout = ctx
        .plan
        .pick(Duration::from_secs(10), Duration::from_secs(5));
    let (_backends, addrs) = echo_backends(ctx, "slowloris backend", 2).await?;
    let config = ConfigFile::new(&addrs, 1_000)
        .with(format!("request_header_timeout: {}ms", timeout.as_millis()));
    let proxy = Proxy::start(ctx, "slowloris-proxy", &config, None).await?;
    let held = super::echoing(&proxy, HELD).await?;
    let series = "tidegate_bad_requests_total{reason=\"header_timeout\"}";
    let timeouts_before = proxy.metrics().await?.get(series);
    // A baseline window: the echo latency before the attack.
    held.window();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = held.window();
    let fds_before = truth::descriptors(proxy.pid())?;

    let attack = attack(proxy.traffic, timeout + Duration::from_secs(10));
    tokio::pin!(attack);
    let mut fds_peak = fds_before;
    let report = loop {
        tokio::select! {
            r = &mut attack => break r?,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                fds_peak = fds_peak.max(truth::descriptors(proxy.pid())?);
            }
        }
    };
    let during = held.window();
    let ended = Instant::now();
    let fds_after = wait_until(
        "the descriptors to come back",
        Duration::from_secs(10),
        || async { Ok(truth::descriptors(proxy.pid())? <= fds_before) },
    )
    .await;
    let timeouts = proxy.metrics().await?.get(series) - timeouts_before;
    let (counts, _) = held.close().await;

    let mut out = Outcome::default();
    let got_408 = report.answered.get(&408).copied().unwrap_or(0);
    let [fastest, median, slowest] = report.answer_ms;
    let t_ms = timeout.as_secs_f64() * 1e3;
    out.push(Figure::check(
        "408 at request_header_timeout",
        format!(
            "{} of {} answered 408 after {:.2} / {:.2} / {:.2} s (fastest / median / slowest; timeout {} s); \
             {} other answers, {} closed unanswered, {} held; {} counted as header_timeout",
            count(got_408),
            count(report.connections),
            fastest / 1e3,
            median / 1e3,
            slowest / 1e3,
            timeout.as_secs(),
            report.answered.values().sum::<u64>() - got_408,
            report.closed,
            report.held,
            timeouts
        ),
        &format!("every one, between the timeout and {} after it, and counted", human(LATE_BY)),
        got_408 == SLOW as u64
            && report.connect_errors == 0
            && fastest >= t_ms - 5.0
            && slowest <= t_ms + LATE_BY.as_secs_f64() * 1e3
            && timeouts == SLOW as f64,
    ));
    out.push(Figure::check(
        "descriptors return",
        format!(
            "proxy descriptors {} before, {} at the peak, {} after ({})",
            count(fds_before),
            count(fds_peak),
            count(truth::descriptors(proxy.pid())?),
            match fds_after {
                Ok(d) => format!("back {} after the last 408", human(d)),
                Err(_) => format!("not back {} after the last 408", human(ended.elapsed())),
            }
        ),
        "back to the count before within 10 s",
        fds_after.is_ok(),
    ));
    out.push(Figure::check(
        "established WebSockets keep echoing",
        format!(
            "p99 {} during (before: {}), slowest {} of {} echoes; {} dropped, {} overdue, {} sent, {} echoed",
            human_us(during.p99_us),
            human_us(baseline.p99_us),
            human_us(during.max_us),
            count(during.count),
            counts.dropped,
            counts.overdue,
            count(counts.sent),
            count(counts.echoed)
        ),
        &format!("p99 ≤ {}, 0 dropped, 0 overdue", human(ECHO_P99_BUDGET)),
        during.p99_us <= ECHO_P99_BUDGET.as_secs_f64() * 1e6
            && counts.dropped == 0
            && counts.overdue == 0
            && counts.sent == counts.echoed,
    ));
    Ok(out)
}
