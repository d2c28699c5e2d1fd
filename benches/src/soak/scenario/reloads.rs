//! Scenario 4, **config reloads under load**: 300 held WebSockets (one message a second each)
//! and a loop of new connections, while the config file is replaced 100 times (50 in CI) in one
//! rename each. Valid versions alternate caps (a default and a per-backend override), timeouts
//! and the backend list (a backend leaves and comes back with connections on it); every 7th
//! version is invalid (a bad value, an unknown field, a bad duration, broken YAML); every 11th
//! also changes `threads`, which needs a restart. Each version waits until the proxy has
//! counted its reload before the next is written.
//!
//! Pass: no held WebSocket dropped or stalled, every echo back; every invalid version refused
//! and counted (`tidegate_config_reloads_total{result="error"}`) with the running caps left as
//! they were; every valid one counted as `ok` (or `restart_needed`) with its caps in
//! `/api/v1/state` within 1 s of the proxy reading it; no new connection failed.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_tools::load::handshakes;
use tokio::time::Instant;

use super::{ECHO_P99_BUDGET, count, echo_backends, human, human_us, until_exact, wait_until};
use crate::soak::proxy::{Backend, ConfigFile, Metrics, Proxy, State};
use crate::soak::{Context, Error, Figure, Outcome};

/// Backends; each version lists three or four of them.
const BACKENDS: usize = 4;
/// Held WebSockets.
const HELD: usize = 300;
/// Caps alternated by the valid versions.
const CAPS: [u32; 2] = [150, 400];
/// The per-backend override alternated on backend 0.
const OVERRIDES: [u32; 2] = [120, 300];
/// Caps must show within this of the proxy reading the version.
const APPLIED_WITHIN: Duration = Duration::from_secs(1);
/// Longest the proxy may take to notice a new version (it polls the file every second).
const NOTICE_LIMIT: Duration = Duration::from_secs(5);

/// What kind of version a reload publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    /// Valid, and also changes a field that needs a restart.
    Restart,
    /// Invalid, in one of four ways.
    Invalid(usize),
}

impl Kind {
    fn of(version: usize) -> Kind {
        if version.is_multiple_of(7) {
            Kind::Invalid(version / 7 % 4)
        } else if version.is_multiple_of(11) {
            Kind::Restart
        } else {
            Kind::Valid
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Valid => "ok",
            Kind::Restart => "restart_needed",
            Kind::Invalid(_) => "error",
        }
    }
}

/// One published version: its text and the caps it asks for.
struct Version {
    kind: Kind,
    /// The config before any breakage of an invalid version.
    config: ConfigFile,
    text: String,
    caps: Vec<(SocketAddr, u64)>,
}

fn version(n: usize, addrs: &[SocketAddr]) -> Version {
    let kind = Kind::of(n);
    // Backend lists: all four, without the last, without the first.
    let listed: Vec<SocketAddr> = match n % 3 {
        0 => addrs.to_vec(),
        1 => addrs[..BACKENDS - 1].to_vec(),
        _ => addrs[1..].to_vec(),
    };
    let cap = CAPS[n % 2];
    let mut config = ConfigFile::new(&listed, cap)
        .with(format!("queue_timeout: {}s", [2, 5][n % 2]))
        .with(format!("request_header_timeout: {}s", [5, 10][n / 2 % 2]))
        .with(format!("connect_timeout: {}s", [1, 2][n / 3 % 2]))
        .with(format!("websocket_idle_timeout: {}h", 1 + n % 2))
        // Unique per version, so that no valid version equals the running one.
        .with(format!("queue_max: {}", 1000 + n));
    if let Some(first) = config.backends.iter_mut().find(|b| b.address == addrs[0]) {
        *first = Backend {
            address: addrs[0],
            cap: Some(OVERRIDES[n / 2 % 2]),
        };
    }
    if kind == Kind::Restart {
        // One more worker than the running proxy has (its default: the cores it may use).
        let running = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        config = config.with(format!("threads: {}", running + 1));
    }
    let caps = config
        .backends
        .iter()
        .map(|b| (b.address, u64::from(b.cap.unwrap_or(cap))))
        .collect();
    let mut text = config.render();
    if let Kind::Invalid(way) = kind {
        text = match way {
            0 => text.replace(
                &format!("max_connections_per_backend: {cap}"),
                "max_connections_per_backend: lots",
            ),
            1 => format!("{text}max_conections_per_backend: 5\n"),
            2 => text.replace("queue_timeout: ", "queue_timeout: 5 parsecs #"),
            _ => format!("{text}backends: [unclosed\n"),
        };
    }
    Version {
        kind,
        config,
        text,
        caps,
    }
}

fn caps_are(state: &State, caps: &[(SocketAddr, u64)]) -> bool {
    caps.iter()
        .all(|&(a, cap)| state.backend(a).is_some_and(|b| b.capacity == cap))
}

fn reloads(m: &Metrics) -> [f64; 3] {
    ["ok", "restart_needed", "error"]
        .map(|r| m.get(&format!("tidegate_config_reloads_total{{result=\"{r}\"}}")))
}

/// What one reload did.
struct Reload {
    kind: Kind,
    counted_as: Option<&'static str>,
    noticed: Duration,
    applied: Option<Duration>,
    caps_kept: bool,
}

/// Runs the reloads.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    let versions = ctx.plan.pick(100, 50);
    let (_backends, addrs) = echo_backends(ctx, "reloads backend", BACKENDS).await?;
    // The proxy starts on version 1 (valid): a version published right after start-up could
    // land before the watch took its first fingerprint, and never be noticed.
    let first = version(1, &addrs);
    let proxy = Proxy::start(ctx, "reloads-proxy", &first.config, None).await?;
    wait_until("the first version's caps", NOTICE_LIMIT, || async {
        Ok(caps_are(&proxy.state().await?, &first.caps))
    })
    .await?;
    let held = super::echoing(&proxy, HELD).await?;
    let churn_config = handshakes::Config {
        duration: Duration::from_secs(versions as u64 * 3),
        concurrency: 2,
        max: u64::MAX,
        pid: None,
    };
    let target = proxy.endpoint();
    let (stop_churn, churn_stopped) = tokio::sync::oneshot::channel::<()>();
    let churn = tokio::spawn(async move {
        let stop = async { drop(churn_stopped.await) };
        handshakes::run_until(&target, &churn_config, stop).await
    });
    held.window();

    let mut record = Vec::with_capacity(versions);
    let mut running = first.caps.clone();
    let mut stalled = 0;
    for n in 2..=versions + 1 {
        let v = version(n, &addrs);
        record.push(reload(&proxy, &v, &running).await?);
        if !matches!(v.kind, Kind::Invalid(_)) {
            running = v.caps;
        }
        stalled = stalled.max(held.counts().stalled);
    }
    let latency = held.window();
    let during = held.counts();
    let _ = stop_churn.send(());
    let churn = churn
        .await
        .map_err(|e| Error::Child(format!("churn task: {e}")))??;
    let (counts, _) = held.close().await;
    let exact = until_exact(&proxy, &addrs, Duration::from_secs(10), |c| {
        c.kernel.iter().sum::<u64>() == 0
    })
    .await;
    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "{HELD} held WebSockets (1 message/s each) and 2 loops of new connections over {BACKENDS} backends; {versions} reloads"
        ),
    ));
    figures(&mut out, &record);
    out.push(Figure::check(
        "new connections through the reloads",
        format!(
            "{} opened and closed, {} failed; open p99 {:.1} ms, slowest {:.1} ms",
            count(churn.handshakes),
            churn.errors,
            churn.open_p99_ms,
            churn.open_max_ms
        ),
        "0 failed",
        churn.errors == 0 && churn.handshakes > 0,
    ));
    out.push(Figure::check(
        "held WebSockets through the reloads",
        format!(
            "{} dropped, {stalled} stalled at most, {} overdue; {} sent, {} echoed; p99 {}",
            during.dropped,
            during.overdue,
            count(counts.sent),
            count(counts.echoed),
            human_us(latency.p99_us)
        ),
        &format!(
            "0 dropped, 0 stalled, every echo back, p99 ≤ {}",
            human(ECHO_P99_BUDGET)
        ),
        during.dropped == 0
            && stalled == 0
            && during.overdue == 0
            && counts.sent == counts.echoed
            && latency.p99_us <= ECHO_P99_BUDGET.as_secs_f64() * 1e6,
    ));
    out.push(Figure::check(
        "counts after the reloads",
        match &exact {
            Ok(d) => format!(
                "proxy and sockets both 0 {} after the last close",
                human(*d)
            ),
            Err(e) => e.to_string(),
        },
        "exact (0 = 0) within 10 s",
        exact.is_ok(),
    ));
    Ok(out)
}

/// Publishes `v`, waits for the proxy to count it, and checks the caps it should (or should
/// not) have applied.
async fn reload(
    proxy: &Proxy,
    v: &Version,
    running: &[(SocketAddr, u64)],
) -> Result<Reload, Error> {
    let before = reloads(&proxy.metrics().await?);
    let written = Instant::now();
    proxy.publish(&v.text)?;
    let counted_as = std::cell::Cell::new(None);
    let noticed = wait_until("the reload to be counted", NOTICE_LIMIT, || async {
        let now = reloads(&proxy.metrics().await?);
        let rose = |i: usize| now[i] > before[i];
        // A reload needing a restart counts `ok` and then `restart_needed`: the more
        // specific label wins, and a restart version waits for it rather than stop at `ok`.
        let label = [(1, "restart_needed"), (2, "error"), (0, "ok")]
            .into_iter()
            .find(|&(i, _)| rose(i))
            .map(|(_, label)| label);
        counted_as.set(label);
        Ok(label.is_some() && (v.kind != Kind::Restart || label != Some("ok")))
    })
    .await;
    let counted_as = counted_as.get();
    let noticed = match noticed {
        Ok(d) => d,
        Err(_) => written.elapsed(),
    };
    let seen = Instant::now();
    let (applied, caps_kept) = if matches!(v.kind, Kind::Invalid(_)) {
        (None, caps_are(&proxy.state().await?, running))
    } else {
        let took = wait_until("the new caps", Duration::from_secs(3), || async {
            Ok(caps_are(&proxy.state().await?, &v.caps))
        })
        .await
        .ok()
        .map(|_| seen.elapsed());
        (took, true)
    };
    Ok(Reload {
        kind: v.kind,
        counted_as,
        noticed,
        applied,
        caps_kept,
    })
}

fn figures(out: &mut Outcome, record: &[Reload]) {
    let invalid: Vec<_> = record
        .iter()
        .filter(|r| matches!(r.kind, Kind::Invalid(_)))
        .collect();
    let refused = invalid
        .iter()
        .filter(|r| r.counted_as == Some("error") && r.caps_kept)
        .count();
    out.push(Figure::check(
        "invalid versions refused and counted",
        format!(
            "{refused} of {} counted as error with the running caps kept",
            invalid.len()
        ),
        "all of them",
        refused == invalid.len() && !invalid.is_empty(),
    ));
    let valid: Vec<_> = record
        .iter()
        .filter(|r| !matches!(r.kind, Kind::Invalid(_)))
        .collect();
    let right = valid
        .iter()
        .filter(|r| r.counted_as == Some(r.kind.label()))
        .count();
    let mut applied: Vec<Duration> = valid.iter().filter_map(|r| r.applied).collect();
    applied.sort();
    let worst = applied.last().copied().unwrap_or_default();
    let restarts = valid.iter().filter(|r| r.kind == Kind::Restart).count();
    out.push(Figure::check(
        "caps applied within a second",
        format!(
            "{} of {} valid versions applied ({restarts} needing a restart counted as such: {right} counted right); \
             caps visible {} at worst after the proxy read the version",
            applied.len(),
            valid.len(),
            human(worst)
        ),
        "every valid version counted and its caps shown ≤ 1 s after it is read",
        applied.len() == valid.len() && right == valid.len() && worst <= APPLIED_WITHIN,
    ));
    let mut noticed: Vec<Duration> = record.iter().map(|r| r.noticed).collect();
    noticed.sort();
    out.push(Figure::info(
        "file replaced → reload counted",
        format!(
            "median {}, worst {} (the watch polls the file once a second)",
            human(noticed.get(noticed.len() / 2).copied().unwrap_or_default()),
            human(noticed.last().copied().unwrap_or_default())
        ),
    ));
}
