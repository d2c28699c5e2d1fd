//! Scenario 1, **hold**: 9,900 WebSockets (what one proxy's 20,000 descriptors allow at 2 per
//! WebSocket) held through three backends, each sending a 32-byte message every 10 s, for the
//! plan's minutes. Every 10 s the proxy's live count is compared with the sockets established
//! at the backends (the kernel's count, not the proxy's), and its RSS and descriptors are read.
//!
//! Pass: live == sockets at every sample (0 drift); RSS flat (the regression line rises by at
//! most 2 % of the RSS, or 1 MiB, over the hold); every message echoed, no connection dropped,
//! no echo overdue; p99 echo round trip within the budget; both counts back to 0 after close.

use std::time::Duration;

use tidegate_tools::load::held::{self, Held};
use tokio::time::{Instant, MissedTickBehavior};

use super::{ECHO_P99_BUDGET, count, echo_backends, human, human_us, sockets, until_exact};
use crate::soak::plot::{self, Line, Panel};
use crate::soak::proxy::{ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome, truth};

/// How often the counts, RSS and latency are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Each connection sends one message this often.
const MESSAGE_EVERY: Duration = Duration::from_secs(10);
/// Most RSS growth over the hold, as a share of the mean RSS (or [`RSS_GROWTH_FLOOR_MIB`]).
const RSS_GROWTH_SHARE: f64 = 0.02;
/// RSS growth always tolerated, MiB (allocator noise on a small heap).
const RSS_GROWTH_FLOOR_MIB: f64 = 1.0;
/// Backends behind the proxy.
const BACKENDS: usize = 3;
/// WebSockets held: 2 descriptors each in the proxy under the machine's limit of 20,000.
const CONNECTIONS: usize = 9_900;

/// One sample of the hold.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    live: u64,
    sockets: u64,
    rss_mib: f64,
    descriptors: u64,
    p99_us: f64,
}

/// Runs the hold.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    let connections = CONNECTIONS;
    let duration = ctx.plan.duration();
    let (_backends, addrs) = echo_backends(ctx, "hold backend", BACKENDS).await?;
    let config = ConfigFile::new(&addrs, 4_000);
    let proxy = Proxy::start(ctx, "hold-proxy", &config, None).await?;
    let opening = Instant::now();
    let held = Held::open(
        &proxy.endpoint(),
        &held::Config {
            connections,
            interval: Some(MESSAGE_EVERY),
            size: 32,
            concurrency: 256,
        },
    )
    .await?;
    let opened_in = opening.elapsed();
    until_exact(&proxy, &addrs, Duration::from_secs(30), |_| true).await?;

    let samples = sample_for(&proxy, &addrs, &held, duration).await?;
    let during = held.counts();
    let (counts, latency) = held.close().await;
    let emptied = until_exact(&proxy, &addrs, Duration::from_secs(30), |c| {
        c.kernel.iter().all(|&k| k == 0)
    })
    .await;
    let after = proxy.state().await?.totals.live;

    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "{} WebSockets over {BACKENDS} backends, one 32 B message per connection per {} s, held {:.1} min; opened in {}",
            count(connections as u64),
            MESSAGE_EVERY.as_secs(),
            duration.as_secs_f64() / 60.0,
            human(opened_in)
        ),
    ));
    out.push(drift_figure(&samples, connections as u64));
    out.push(rss_figure(&samples));
    out.push(Figure::check(
        "echo round trip",
        format!(
            "p50 {}, p99 {}, max {} over {} echoes",
            human_us(latency.p50_us),
            human_us(latency.p99_us),
            human_us(latency.max_us),
            count(latency.count)
        ),
        &format!("p99 ≤ {}", human(ECHO_P99_BUDGET)),
        latency.p99_us <= ECHO_P99_BUDGET.as_secs_f64() * 1e6,
    ));
    out.push(Figure::check(
        "messages",
        format!(
            "{} sent, {} echoed, {} overdue, {} connections dropped",
            count(counts.sent),
            count(counts.echoed),
            count(during.overdue),
            during.dropped
        ),
        "every message echoed; 0 overdue, 0 dropped",
        counts.sent == counts.echoed && during.overdue == 0 && during.dropped == 0,
    ));
    let fds = samples.iter().map(|s| s.descriptors).max().unwrap_or(0);
    out.push(Figure::info(
        "proxy descriptors",
        format!("{} at most (2 per WebSocket + listeners)", count(fds)),
    ));
    out.push(Figure::check(
        "counts after close",
        match &emptied {
            Ok(took) => format!("live {after}, sockets 0, {} after the close", human(*took)),
            Err(e) => format!("live {after}: {e}"),
        },
        "both 0 within 30 s",
        emptied.is_ok() && after == 0,
    ));
    out.plots.push(draw(ctx, &samples)?);
    Ok(out)
}

/// Samples every 10 s for `duration` (a first sample at once).
async fn sample_for(
    proxy: &Proxy,
    addrs: &[std::net::SocketAddr],
    held: &Held,
    duration: Duration,
) -> Result<Vec<Sample>, Error> {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    held.window();
    loop {
        ticks.tick().await;
        let t = start.elapsed();
        let window = held.window();
        let live = proxy.state().await?.totals.live;
        let sockets: u64 = sockets(addrs, None).await?.iter().sum();
        let sample = Sample {
            t: t.as_secs_f64(),
            live,
            sockets,
            rss_mib: truth::rss_mib(proxy.pid())?,
            descriptors: truth::descriptors(proxy.pid())?,
            p99_us: window.p99_us,
        };
        eprintln!(
            "[soak hold {:>4.0}s] live {} sockets {} rss {:.1} MiB fds {} p99 {} max {} {:?}",
            sample.t,
            sample.live,
            sample.sockets,
            sample.rss_mib,
            sample.descriptors,
            human_us(sample.p99_us),
            human_us(window.max_us),
            held.counts()
        );
        samples.push(sample);
        if t >= duration {
            return Ok(samples);
        }
    }
}

fn drift_figure(samples: &[Sample], connections: u64) -> Figure {
    let drift = samples
        .iter()
        .map(|s| s.live.abs_diff(s.sockets))
        .max()
        .unwrap_or(0);
    let short = samples.iter().filter(|s| s.live != connections).count();
    Figure::check(
        "live == sockets at the backends, every 10 s",
        format!(
            "max |live − sockets| = {drift} over {} samples; live ≠ {} in {short}",
            samples.len(),
            count(connections)
        ),
        "0 drift at every sample",
        drift == 0 && short == 0 && !samples.is_empty(),
    )
}

fn rss_figure(samples: &[Sample]) -> Figure {
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.t / 60.0, s.rss_mib)).collect();
    let slope = super::slope(&points);
    let minutes = points.last().map_or(0.0, |p| p.0);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64;
    let growth = slope * minutes;
    let limit = (mean * RSS_GROWTH_SHARE).max(RSS_GROWTH_FLOOR_MIB);
    let first = points.first().map_or(0.0, |p| p.1);
    let last = points.last().map_or(0.0, |p| p.1);
    Figure::check(
        "proxy RSS",
        format!(
            "{first:.1} → {last:.1} MiB; slope {slope:+.3} MiB/min ({growth:+.2} MiB over the hold)"
        ),
        &format!(
            "regression rise ≤ {:.0} % of RSS, at least {RSS_GROWTH_FLOOR_MIB} MiB (here {limit:.2} MiB)",
            RSS_GROWTH_SHARE * 100.0
        ),
        growth <= limit && samples.len() >= 2,
    )
}

fn draw(ctx: &Context, samples: &[Sample]) -> Result<(String, String), Error> {
    let series = |f: fn(&Sample) -> f64| samples.iter().map(|s| (s.t, f(s))).collect();
    let panels = [
        Panel {
            caption: "live WebSockets: the proxy's count and the sockets at the backends".into(),
            y_desc: "connections".into(),
            lines: vec![
                Line::new("sockets at backends (kernel)", series(|s| s.sockets as f64)),
                Line::new("live (proxy)", series(|s| s.live as f64)),
            ],
        },
        Panel {
            caption: "proxy RSS".into(),
            y_desc: "MiB".into(),
            lines: vec![Line::new("RSS", series(|s| s.rss_mib))],
        },
        Panel {
            caption: "echo round trip, p99 per 10 s window".into(),
            y_desc: "ms".into(),
            lines: vec![Line::new("p99", series(|s| s.p99_us / 1e3))],
        },
    ];
    let file = "soak-hold.svg";
    plot::panels_svg(&ctx.out.join(file), "hold: 9,900 WebSockets", &panels)?;
    Ok((
        file.into(),
        "hold: live vs sockets, RSS, p99 over time".into(),
    ))
}
