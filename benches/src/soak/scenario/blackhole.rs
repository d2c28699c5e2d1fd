//! Scenario 3, **black-holed backend**: backend N runs in a network namespace at an address
//! that exists only there (`10.213.X.2`, through a veth pair), next to two loopback backends A
//! and B. N is capped at 100; 330 idle WebSockets fill it exactly (A and B take the rest), then
//! 200 WebSockets echoing once a second each go to A and B only. Then every packet to and from
//! N's port is dropped by nft rules inside the namespace — the host's packets vanish, as with a
//! pulled cable or a frozen VM. (SIGSTOP would not do: a stopped process's kernel still
//! completes handshakes and answers keepalive probes. `tc netem loss 100%` would, but the
//! kernel here has no netem module.)
//!
//! Pass: the 100 idle WebSockets on N are ended by TCP keepalive (`tcp_keepalive: {idle: 5s,
//! interval: 1s, count: 3}`) within idle + interval × count + 3 s; then new connections routed
//! to N time out (`connect_timeout` 1 s), N is ejected and they are placed on A or B — none
//! fails; nothing else stalls: the echoing WebSockets drop nothing, stall nothing and keep their
//! p99 within the budget throughout. Without keepalive in the binary (issue 10), the idle ones
//! are closed by their clients instead (the proxy releases them on the client's FIN) and the
//! keepalive figure is skipped.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_tools::load::handshakes;
use tidegate_tools::load::held::{self, Held};
use tokio::time::Instant;

use super::{ECHO_P99_BUDGET, count, echo_backends, human, human_us, wait_until};
use crate::soak::netns::{self, Netns};
use crate::soak::process;
use crate::soak::proxy::{Backend, ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome, truth};

/// N's cap: the idle WebSockets it holds when the black hole opens.
const ON_N: u64 = 100;
/// Idle WebSockets: enough to fill N with some over.
const IDLE: usize = 330;
/// WebSockets echoing once a second throughout (all on A and B).
const ECHOING: usize = 200;
/// Keepalive settings given to the proxy.
const KEEPALIVE: (u64, u64, u64) = (5, 1, 3);
/// Each connect gets this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the black hole.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    if let Err(why) = netns::available() {
        let mut out = Outcome::default();
        out.push(Figure::skipped(
            "black-holed backend",
            "not run".into(),
            "-",
            &why,
        ));
        return Ok(out);
    }
    let ns = Netns::create()?;
    let inner = SocketAddr::from((ns.inner, 0));
    let (n_child, n) =
        process::echo_backend(ctx, "blackhole backend N", inner, Some(ns.name())).await?;
    let (_ab, ab) = echo_backends(ctx, "blackhole backend", 2).await?;
    let keepalive = ctx.features.tcp_keepalive;
    let (idle, interval, probes) = KEEPALIVE;
    let mut config = ConfigFile::new(&ab, 1_000)
        .with(format!(
            "connect_timeout: {}ms",
            CONNECT_TIMEOUT.as_millis()
        ))
        .with("eject_for: 60s");
    config.backends.push(Backend {
        address: n,
        cap: Some(ON_N as u32),
    });
    if keepalive {
        config = config.with(format!(
            "tcp_keepalive: {{idle: {idle}s, interval: {interval}s, count: {probes}}}"
        ));
    }
    let proxy = Proxy::start(ctx, "blackhole-proxy", &config, None).await?;
    let quiet = Held::open(
        &proxy.endpoint(),
        &held::Config {
            connections: IDLE,
            interval: None,
            size: 32,
            concurrency: 32,
        },
    )
    .await?;
    let n_pid = n_child.pid();
    wait_until("N full", Duration::from_secs(10), || async {
        let on_n = truth::at_backends(&[n], Some(n_pid))?[0];
        Ok(proxy.state().await?.occupied(n) == ON_N && on_n == ON_N)
    })
    .await?;
    let talking = super::echoing(&proxy, ECHOING).await?;
    talking.window();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = talking.window();

    ns.black_hole(n.port())?;
    let holed = Instant::now();
    let budget = Duration::from_secs(idle + interval * probes + 3);
    let stalled = std::cell::Cell::new(0);
    let ended = wait_until("N's WebSockets to end", budget, || async {
        stalled.set(stalled.get().max(talking.counts().stalled));
        Ok(proxy.state().await?.occupied(n) == 0)
    })
    .await;
    let left_on_n = proxy.state().await?.occupied(n);
    let ended_by_keepalive = quiet.counts().dropped;
    // Whatever is still open (everything on A and B; on N too without keepalive) is closed by
    // its clients; the proxy must release N's on the client's FIN.
    let (_, _) = quiet.close().await;
    wait_until("N's slots released", Duration::from_secs(10), || async {
        Ok(proxy.state().await?.occupied(n) == 0)
    })
    .await?;

    let churn = handshakes::run(
        &proxy.endpoint(),
        &handshakes::Config {
            duration: Duration::from_secs(6),
            concurrency: 4,
            max: u64::MAX,
            pid: None,
        },
    )
    .await?;
    let state = proxy.state().await?;
    let m = proxy.metrics().await?;
    let n_row = state.backend(n);
    let timeouts = m.get(&format!(
        "tidegate_upgrades_total{{backend=\"{n}\",result=\"connect_error\"}}"
    ));
    let during = talking.window();
    let counts = talking.counts();
    let stalled = stalled.get().max(counts.stalled);
    let (final_counts, _) = talking.close().await;
    drop(proxy);
    drop(n_child);
    drop(ns);

    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "backend N at {n} in namespace, capped at {ON_N}, filled by {IDLE} idle WebSockets; \
             {ECHOING} echoing once a second on A and B; nft DROP both ways on N's port"
        ),
    ));
    let rule = format!(
        "all {ON_N} ended within {} (keepalive {idle}s + {probes} × {interval}s + 3 s)",
        human(budget)
    );
    let value = match &ended {
        Ok(d) => format!(
            "{ON_N} ended {} after the black hole; {ended_by_keepalive} clients saw the close",
            human(*d)
        ),
        Err(_) => format!(
            "{left_on_n} of {ON_N} still open {} after the black hole",
            human(holed.elapsed().min(budget))
        ),
    };
    out.push(if keepalive {
        Figure::check(
            "open connections on N ended by keepalive",
            value,
            &rule,
            ended.is_ok() && ended_by_keepalive == ON_N,
        )
    } else {
        Figure::skipped(
            "open connections on N ended by keepalive",
            value,
            &rule,
            "needs tcp_keepalive (issue 10)",
        )
    });
    out.push(Figure::check(
        "connects to N time out and eject it",
        format!(
            "{timeouts} connects to N timed out; N ejected: {}; {} new connections placed, {} failed; open p99 {:.0} ms, slowest {:.0} ms (connect_timeout {})",
            n_row.is_some_and(|r| r.ejected),
            count(churn.handshakes),
            churn.errors,
            churn.open_p99_ms,
            churn.open_max_ms,
            human(CONNECT_TIMEOUT)
        ),
        "≥ 1 timed out, N ejected, every new connection placed elsewhere",
        timeouts >= 1.0 && n_row.is_some_and(|r| r.ejected) && churn.errors == 0,
    ));
    out.push(Figure::check(
        "nothing else stalls",
        format!(
            "echoing WebSockets: p99 {} (before: {}), {} stalled at most, {} dropped, {} overdue, {} sent, {} echoed",
            human_us(during.p99_us),
            human_us(baseline.p99_us),
            stalled,
            counts.dropped,
            counts.overdue,
            count(final_counts.sent),
            count(final_counts.echoed)
        ),
        &format!("0 stalled, 0 dropped, every echo back, p99 ≤ {}", human(ECHO_P99_BUDGET)),
        stalled == 0
            && counts.dropped == 0
            && counts.overdue == 0
            && final_counts.sent == final_counts.echoed
            && during.p99_us <= ECHO_P99_BUDGET.as_secs_f64() * 1e6,
    ));
    Ok(out)
}
