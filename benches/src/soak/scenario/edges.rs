//! Scenario 8, **multi-replica**: two edges (`tidegate proxy` each, listing the other's admin
//! address under `peers: {static: [...]}`) in front of three backends capped at 200 — a cap on
//! the sum over both edges. 350 reconnecting clients per edge ask for 700 slots of 600, so the
//! caps bind all the time. Every minute one edge, in turn, is SIGKILLed and started again on
//! the same ports 2 s later; its clients reconnect to it with backoff.
//!
//! Pass: no backend above its cap at any sample (sockets at the backends, every 100 ms); after
//! each restart both edges' view of the cluster (`totals.cluster_live`) equals the sockets at
//! the backends within a second of the sockets' last change. (The killed edge's clients come
//! back over seconds with their backoff; the views follow the sockets a sync interval behind,
//! so the time from the restart itself is reported, not judged.)

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tidegate_tools::load::{Population, Profile, population};
use tokio::time::Instant;

use super::{count, echo_backends, human, sockets, wait_until};
use crate::soak::proxy::{ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome};

/// Backends.
const BACKENDS: usize = 3;
/// Cap per backend, on the sum over the edges.
const CAP: u64 = 200;
/// Clients per edge.
const CLIENTS: u64 = 350;
/// Time between kills.
const KILL_EVERY: Duration = Duration::from_secs(60);
/// Time a killed edge stays down.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// Views must equal the sockets within this of a restart.
const CONVERGE_WITHIN: Duration = Duration::from_secs(1);

/// The ports of one edge, fixed so that it can come back on them.
#[derive(Debug, Clone, Copy)]
struct Ports {
    traffic: SocketAddr,
    admin: SocketAddr,
}

/// Runs the edges.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    if !ctx.features.peers {
        let mut out = Outcome::default();
        out.push(Figure::skipped(
            "multi-replica",
            "not run".into(),
            "no backend above its cap; views converge within 1 s",
            "needs peers (issue 11)",
        ));
        return Ok(out);
    }
    let kills = (ctx.plan.minutes.round() as usize).max(1);
    let (_backends, addrs) = echo_backends(ctx, "edges backend", BACKENDS).await?;
    let ports = free_ports()?;
    let mut edges = Vec::new();
    for i in 0..2 {
        edges.push(start(ctx, &addrs, &ports, i).await?);
    }
    let mut loads = Vec::new();
    for (i, edge) in edges.iter().enumerate() {
        let load = Population::new(population::Plan {
            target: edge.endpoint(),
            profile: Profile::Trace(vec![(0.0, CLIENTS), (1.0, CLIENTS)]),
            period: Duration::from_secs(24 * 3600),
            duration: None,
            report: false,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move { load.run(async { drop(stopped.await) }).await });
        loads.push((i, stop, task));
    }
    wait_until("the caps filled", Duration::from_secs(60), || async {
        Ok(sockets(&addrs, None).await?.iter().sum::<u64>() >= CAP * BACKENDS as u64 * 9 / 10)
    })
    .await?;

    let start_at = Instant::now();
    let top = Mutex::new((0u64, 0u64));
    let sampler = async {
        loop {
            let s = sockets(&addrs, None).await?;
            let highest = s.iter().copied().max().unwrap_or(0);
            {
                let mut t = top.lock().unwrap_or_else(|p| p.into_inner());
                *t = (t.0.max(highest), t.1 + 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let killer = async {
        let mut converged = Vec::new();
        for k in 0..kills {
            tokio::time::sleep_until(start_at + KILL_EVERY * k as u32 + Duration::from_secs(20))
                .await;
            let victim = k % 2;
            edges[victim].kill();
            tokio::time::sleep(DOWN_FOR).await;
            edges[victim] = start(ctx, &addrs, &ports, victim).await?;
            let took = converge(&edges, &addrs).await;
            eprintln!("[soak edges] killed edge {victim}; views equal the sockets: {took:?}");
            converged.push(took);
        }
        Ok::<_, Error>(converged)
    };
    let converged = tokio::select! {
        r = killer => r?,
        r = sampler => return r,
    };
    for (_, stop, task) in loads {
        let _ = stop.send(());
        let _ = task.await;
    }
    let (highest, samples) = *top.lock().unwrap_or_else(|p| p.into_inner());

    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "2 edges, {CLIENTS} reconnecting clients each, {BACKENDS} backends capped at {CAP} (sum over edges); {} kills, one a minute, {} down each",
            converged.len(),
            human(DOWN_FOR)
        ),
    ));
    out.push(Figure::check(
        "no backend above its cap",
        format!(
            "highest sockets on one backend: {highest} (cap {CAP}) over {} samples",
            count(samples)
        ),
        "≤ cap at every sample",
        highest <= CAP && samples > 0,
    ));
    let ok: Vec<Converged> = converged.iter().filter_map(|c| c.clone().ok()).collect();
    let worst = |f: fn(&Converged) -> Duration| ok.iter().map(f).max().unwrap_or_default();
    out.push(Figure::check(
        "views converge",
        format!(
            "both edges' cluster_live = sockets {} after the sockets last changed at worst; {} after the restart \
             (while the killed edge's clients came back with their backoff) ({} of {} restarts)",
            human(worst(|c| c.after_change)),
            human(worst(|c| c.after_restart)),
            ok.len(),
            converged.len()
        ),
        "within 1 s of the last change, after every restart",
        ok.len() == converged.len() && worst(|c| c.after_change) <= CONVERGE_WITHIN,
    ));
    Ok(out)
}

/// Four free ports on 127.0.0.1, held at once so they differ.
fn free_ports() -> Result<[Ports; 2], Error> {
    let bind =
        || std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding a free port"));
    let held = [bind()?, bind()?, bind()?, bind()?];
    let addr = |i: usize| held[i].local_addr().map_err(Error::io("reading a port"));
    Ok([
        Ports {
            traffic: addr(0)?,
            admin: addr(1)?,
        },
        Ports {
            traffic: addr(2)?,
            admin: addr(3)?,
        },
    ])
}

/// Starts edge `i` on its ports, listing the other edge as its peer.
async fn start(
    ctx: &Context,
    addrs: &[SocketAddr],
    ports: &[Ports; 2],
    i: usize,
) -> Result<Proxy, Error> {
    let mut config = ConfigFile::new(addrs, CAP as u32)
        .with(format!("peers: {{static: [{}]}}", ports[1 - i].admin))
        .with("queue_timeout: 1s");
    config.listen = ports[i].traffic;
    config.admin = ports[i].admin;
    Proxy::start(ctx, &format!("edges-proxy-{i}"), &config, None).await
}

/// After a restart: waits (at most 10 s) until both views equal the sockets. Returns the time
/// from the restart (which includes the killed edge's clients coming back with their
/// backoff, seconds, while the sockets keep changing) and from the last change of the
/// sockets seen (the views' own lag: the rule).
async fn converge(edges: &[Proxy], addrs: &[SocketAddr]) -> Result<Converged, String> {
    let restarted = Instant::now();
    let mut last = (None, restarted);
    loop {
        let (equal, kernel) = converged_now(edges, addrs)
            .await
            .map_err(|e| e.to_string())?;
        if last.0 != Some(kernel) {
            last = (Some(kernel), Instant::now());
        }
        if equal {
            return Ok(Converged {
                after_restart: restarted.elapsed(),
                after_change: last.1.elapsed(),
            });
        }
        if restarted.elapsed() >= Duration::from_secs(10) {
            return Err("the views did not equal the sockets within 10 s of the restart".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long the views took to equal the sockets after a restart.
#[derive(Debug, Clone, Copy)]
struct Converged {
    /// From the restarted edge being ready.
    after_restart: Duration,
    /// From the last change of the sockets at the backends before they were equal.
    after_change: Duration,
}

/// Whether every edge's `cluster_live` equals the sockets at the backends, read between two
/// readings of the views that agree; and the sockets.
async fn converged_now(edges: &[Proxy], addrs: &[SocketAddr]) -> Result<(bool, u64), Error> {
    let views = async || {
        let mut v = Vec::new();
        for e in edges {
            v.push(e.state().await?.totals.cluster_live);
        }
        Ok::<_, Error>(v)
    };
    let before = views().await?;
    let kernel: u64 = sockets(addrs, None).await?.iter().sum();
    let after = views().await?;
    let equal = before == after && before.iter().all(|v| *v == Some(kernel));
    Ok((equal, kernel))
}
