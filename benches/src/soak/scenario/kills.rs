//! Scenario 2, **backend kills under load**: 2,000 clients (the reconnecting population of
//! `tidegate_tools::load::population`: a dropped client comes back after a full-jitter backoff)
//! over five backends capped at 520 each — so four survivors can just hold them all. Every
//! 30 s one backend, in turn, is SIGKILLed; once every client is placed again it is restarted
//! on the same port (a replaced pod), empty, and the next kill takes another one.
//!
//! The counts are sampled every 250 ms (the proxy's, and the sockets at the backends); after
//! each kill they are compared as fast as they can be read.
//!
//! Pass: within 1 s of each kill the killed backend's count is 0 and every count matches the
//! sockets; no backend is above its cap at any sample (neither the proxy's count nor the
//! sockets); the displaced clients land on the survivors as least-loaded placement would put
//! them (at most 10 % of them elsewhere); every client is placed again before the next kill.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tidegate_tools::load::{Population, Profile, population};
use tokio::time::Instant;

use super::{compare, count, echo_backends, human, occupied, wait_until};
use crate::soak::plot::{self, Line, Panel};
use crate::soak::process::{self, Child};
use crate::soak::proxy::{ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome, truth};

/// Backends behind the proxy.
const BACKENDS: usize = 5;
/// Clients.
const CLIENTS: u64 = 2_000;
/// Cap per backend: four survivors hold 2,080, just above the clients.
const CAP: u32 = 520;
/// Time between kills.
const KILL_EVERY: Duration = Duration::from_secs(30);
/// How often the counts are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The killed backend's count must reach 0 and the counts match the sockets within this.
const EXACT_WITHIN: Duration = Duration::from_secs(1);
/// Most displaced clients allowed to land away from least-loaded placement.
const MISPLACED_SHARE: f64 = 0.10;

/// One sample of the counts.
#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    proxy: Vec<u64>,
    kernel: Vec<u64>,
    rss_mib: f64,
}

/// What one kill did.
#[derive(Debug, Clone)]
struct Kill {
    exact: Result<Exact, String>,
    replaced: Result<Duration, String>,
    displaced: u64,
    misplaced: u64,
    to_victim: u64,
}

/// Runs the kills.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    let kills = ((ctx.plan.minutes * 60.0 / KILL_EVERY.as_secs_f64()).round() as usize).max(2);
    let (mut backends, addrs) = echo_backends(ctx, "kills backend", BACKENDS).await?;
    let config = ConfigFile::new(&addrs, CAP);
    let proxy = Proxy::start(ctx, "kills-proxy", &config, None).await?;
    let load = Population::new(population::Plan {
        target: proxy.endpoint(),
        profile: Profile::Trace(vec![(0.0, CLIENTS), (1.0, CLIENTS)]),
        period: Duration::from_secs(24 * 3600),
        duration: None,
        report: false,
    });
    let clients = load.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let load_task = tokio::spawn(async move { load.run(async { drop(stopped.await) }).await });
    let placed = || async {
        Ok(clients.open.load(Ordering::Acquire) == CLIENTS
            && proxy.state().await?.totals.live == CLIENTS)
    };
    wait_until("every client placed", Duration::from_secs(60), placed).await?;

    let start = Instant::now();
    let samples = Mutex::new(Vec::new());
    let sampler = sample(&proxy, &addrs, start, &samples);
    let killer = async {
        let mut record = Vec::new();
        for k in 0..kills {
            tokio::time::sleep_until(start + KILL_EVERY * k as u32 + Duration::from_secs(5)).await;
            let victim = k % BACKENDS;
            record.push(kill_one(ctx, &proxy, &addrs, &mut backends, victim, &placed).await?);
        }
        Ok::<_, Error>(record)
    };
    let record = tokio::select! {
        r = killer => r?,
        e = sampler => return Err(e),
    };
    let _ = stop.send(());
    let clients = load_task
        .await
        .map_err(|e| Error::Child(format!("load task: {e}")))?;
    let samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());

    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "{} clients over {BACKENDS} backends capped at {CAP}; {} kills, one every {} s; \
             {} dropped by kills, {} refused (503), {} failed handshakes",
            count(CLIENTS),
            record.len(),
            KILL_EVERY.as_secs(),
            count(clients.dropped.load(Ordering::Acquire)),
            count(clients.refused.load(Ordering::Acquire)),
            count(clients.failed.load(Ordering::Acquire)),
        ),
    ));
    figures(&mut out, &record, &samples);
    out.plots.push(draw(ctx, &samples)?);
    Ok(out)
}

/// Kills backend `victim`, measures, waits for every client to be placed, restarts it.
async fn kill_one<F, Fut>(
    ctx: &Context,
    proxy: &Proxy,
    addrs: &[SocketAddr],
    backends: &mut [Child],
    victim: usize,
    placed: &F,
) -> Result<Kill, Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let before = occupied(&proxy.state().await?, addrs);
    backends[victim].kill();
    let exact = until_exact_traced(proxy, addrs, victim, Instant::now()).await;
    let replaced = wait_until(
        "every client placed again",
        KILL_EVERY - Duration::from_secs(8),
        placed,
    )
    .await
    .map_err(|e| e.to_string());
    let after = occupied(&proxy.state().await?, addrs);
    let displaced = before[victim];
    let ideal = least_loaded(&before, victim, displaced, u64::from(CAP));
    let misplaced = after
        .iter()
        .zip(&before)
        .zip(&ideal)
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, ((a, b), ideal))| a.saturating_sub(*b).abs_diff(*ideal))
        .sum::<u64>()
        / 2;
    let name = format!("kills backend {victim}");
    let (child, _) = process::echo_backend(ctx, &name, addrs[victim], None).await?;
    backends[victim] = child;
    eprintln!(
        "[soak kills] killed {victim} ({displaced} on it): exact after {exact:?}, placed again after {replaced:?}; {before:?} -> {after:?}"
    );
    Ok(Kill {
        exact,
        replaced,
        displaced,
        misplaced,
        to_victim: after[victim],
    })
}

/// When the counts were exact after a kill, and what it took to see it.
#[derive(Debug, Clone, Copy)]
struct Exact {
    /// From the kill to the start of the first comparison that found the killed backend at 0
    /// in both of the proxy's readings and every backend's sockets between them: the counts
    /// were exact at that instant (its first reading).
    at: Duration,
    /// From the kill to the proxy's own count of the killed backend reaching 0 (its state,
    /// polled every 5 ms): how fast the relays of the dead backend released their slots.
    released: Duration,
    /// How long that comparison's reads took (mostly `/proc/net/tcp` during the reconnect
    /// storm, read until two reads agree).
    read: Duration,
}

/// Waits at most 5 s for the killed backend's count to reach 0 in the proxy's own state, then
/// for a comparison that finds every count exact (as [`super::until_exact`]), printing each
/// comparison that was not. The time of a comparison is when it started: a read of the
/// kernel's table under churn takes hundreds of milliseconds on a loaded machine, and the
/// counts it proves exact are those of its first reading, not of its end.
async fn until_exact_traced(
    proxy: &Proxy,
    addrs: &[SocketAddr],
    victim: usize,
    killed: Instant,
) -> Result<Exact, String> {
    let limit = killed + Duration::from_secs(5);
    let released = loop {
        let state = proxy.state().await.map_err(|e| e.to_string())?;
        if state.occupied(addrs[victim]) == 0 {
            break killed.elapsed();
        }
        if Instant::now() >= limit {
            return Err("the proxy still counted the killed backend after 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    loop {
        let start = Instant::now();
        let c = compare(proxy, addrs).await.map_err(|e| e.to_string())?;
        if c.consistent() && c.before[victim] == 0 && c.after[victim] == 0 {
            let (at, read) = (start - killed, start.elapsed());
            return Ok(Exact { at, released, read });
        }
        eprintln!(
            "[soak kills]   +{:?} (read {:?}): proxy {:?} / {:?}, live {:?}, sockets {:?}",
            start - killed,
            start.elapsed(),
            c.before,
            c.after,
            c.live,
            c.kernel
        );
        if Instant::now() >= limit {
            return Err("the counts did not match the sockets within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where least-loaded placement puts `displaced` new connections on the survivors of
/// `counts` (all but `victim`), each capped at `cap`: how many each one gets.
fn least_loaded(counts: &[u64], victim: usize, displaced: u64, cap: u64) -> Vec<u64> {
    let mut now = counts.to_vec();
    let mut added = vec![0; counts.len()];
    for _ in 0..displaced {
        let Some(i) = (0..now.len())
            .filter(|&i| i != victim && now[i] < cap)
            .min_by_key(|&i| now[i])
        else {
            break;
        };
        now[i] += 1;
        added[i] += 1;
    }
    added
}

/// Samples every 250 ms into `into` until dropped; returns only on an error.
async fn sample(
    proxy: &Proxy,
    addrs: &[SocketAddr],
    start: Instant,
    into: &Mutex<Vec<Sample>>,
) -> Error {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    loop {
        ticks.tick().await;
        let read = async {
            let c = compare(proxy, addrs).await?;
            Ok::<_, Error>(Sample {
                t: start.elapsed().as_secs_f64(),
                proxy: c.after,
                kernel: c.kernel,
                rss_mib: truth::rss_mib(proxy.pid())?,
            })
        };
        match read.await {
            Ok(s) => into.lock().unwrap_or_else(|p| p.into_inner()).push(s),
            Err(e) => return e,
        }
    }
}

fn figures(out: &mut Outcome, record: &[Kill], samples: &[Sample]) {
    let exact: Vec<Exact> = record.iter().filter_map(|k| k.exact.clone().ok()).collect();
    let worst = |f: fn(&Exact) -> Duration| exact.iter().map(f).max().unwrap_or_default();
    out.push(Figure::check(
        "counts exact after each kill",
        format!(
            "killed backend at 0 and every count = sockets {} after a kill at worst; {}/{} kills within {} \
             (the proxy's own count of the killed backend at 0 after {} at worst; one comparison's reads took {} at worst)",
            human(worst(|e| e.at)),
            exact.iter().filter(|e| e.at <= EXACT_WITHIN).count(),
            record.len(),
            human(EXACT_WITHIN),
            human(worst(|e| e.released)),
            human(worst(|e| e.read)),
        ),
        "within 1 s of every kill",
        exact.len() == record.len() && worst(|e| e.at) <= EXACT_WITHIN,
    ));
    let cap = u64::from(CAP);
    let top_proxy = samples
        .iter()
        .flat_map(|s| &s.proxy)
        .max()
        .copied()
        .unwrap_or(0);
    let top_kernel = samples
        .iter()
        .flat_map(|s| &s.kernel)
        .max()
        .copied()
        .unwrap_or(0);
    out.push(Figure::check(
        "no backend above its cap",
        format!(
            "highest: {top_proxy} by the proxy's count, {top_kernel} by the sockets (cap {CAP}) over {} samples",
            count(samples.len() as u64)
        ),
        "≤ cap at every sample, both counts",
        top_proxy <= cap && top_kernel <= cap && !samples.is_empty(),
    ));
    let displaced: u64 = record.iter().map(|k| k.displaced).sum();
    let misplaced: u64 = record.iter().map(|k| k.misplaced).sum();
    let to_victim: u64 = record.iter().map(|k| k.to_victim).sum();
    let share = misplaced as f64 / displaced.max(1) as f64;
    out.push(Figure::check(
        "reconnects spread over the survivors",
        format!(
            "{} of {} displaced clients away from least-loaded placement ({:.1} %); {to_victim} on a killed backend",
            count(misplaced),
            count(displaced),
            share * 100.0
        ),
        "≤ 10 % misplaced, none on the killed backend",
        share <= MISPLACED_SHARE && to_victim == 0,
    ));
    let replaced: Vec<_> = record
        .iter()
        .filter_map(|k| k.replaced.clone().ok())
        .collect();
    let mut sorted = replaced.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    out.push(Figure::check(
        "time to re-place every client",
        format!(
            "median {}, worst {} ({} displaced per kill on average)",
            human(median),
            human(sorted.last().copied().unwrap_or_default()),
            displaced / record.len().max(1) as u64
        ),
        "every client placed again before the next kill",
        replaced.len() == record.len(),
    ));
}

fn draw(ctx: &Context, samples: &[Sample]) -> Result<(String, String), Error> {
    let total = |f: fn(&Sample) -> &Vec<u64>| {
        samples
            .iter()
            .map(|s| (s.t, f(s).iter().sum::<u64>() as f64))
            .collect()
    };
    let per_backend = (0..BACKENDS)
        .map(|i| {
            let pts = samples.iter().map(|s| (s.t, s.kernel[i] as f64)).collect();
            Line::new(&format!("backend {i} sockets"), pts)
        })
        .chain(std::iter::once(Line {
            thin: true,
            ..Line::new(
                "cap",
                vec![
                    (0.0, f64::from(CAP)),
                    (samples.last().map_or(1.0, |s| s.t), f64::from(CAP)),
                ],
            )
        }))
        .collect();
    let panels = [
        Panel {
            caption: "live WebSockets: the proxy's count (live + pending) and the sockets at the backends".into(),
            y_desc: "connections".into(),
            lines: vec![
                Line::new("sockets at backends (kernel)", total(|s| &s.kernel)),
                Line::new("live + pending (proxy)", total(|s| &s.proxy)),
            ],
        },
        Panel {
            caption: "sockets at each backend".into(),
            y_desc: "connections".into(),
            lines: per_backend,
        },
        Panel {
            caption: "proxy RSS".into(),
            y_desc: "MiB".into(),
            lines: vec![Line::new(
                "RSS",
                samples.iter().map(|s| (s.t, s.rss_mib)).collect(),
            )],
        },
    ];
    let file = "soak-kills.svg";
    plot::panels_svg(
        &ctx.out.join(file),
        "backend kills: 2,000 reconnecting clients, one of five backends SIGKILLed every 30 s",
        &panels,
    )?;
    Ok((
        file.into(),
        "backend kills: live vs sockets, per backend, RSS over time".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::least_loaded;

    #[test]
    fn least_loaded_placement_fills_the_emptiest_first_up_to_the_cap() {
        assert_eq!(
            least_loaded(&[0, 400, 500, 500, 500], 1, 400, 520),
            vec![400, 0, 0, 0, 0]
        );
        assert_eq!(
            least_loaded(&[400, 400, 400, 400, 400], 0, 400, 520)[1..],
            [100; 4]
        );
        assert_eq!(
            least_loaded(&[0, 500, 510, 520], 1, 600, 520),
            vec![520, 0, 10, 0]
        );
    }
}
