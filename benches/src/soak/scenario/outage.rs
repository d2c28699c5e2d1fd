//! Scenario 7, **kube-apiserver outage**: the proxy in Kubernetes mode (EndpointSlice
//! discovery, the scaler on a Deployment, the Lease) against the real apiserver tier, three
//! local echo backends behind three EndpointSlices, capped at 100 each, 150 WebSockets echoing
//! once a second. Then etcd and kube-apiserver are frozen with SIGSTOP for 60 s (20 s in CI,
//! with a 6 s Lease): they neither answer nor close a connection. A quarter into the outage 100
//! more clients arrive — 250 of 300, past the scaler's target occupancy, so it wants a fourth
//! replica it cannot write. Then both are thawed and a fourth backend's EndpointSlice created.
//!
//! Pass: serving continues on the last endpoints (no WebSocket dropped or stalled, the 100 new
//! ones placed, capacity unchanged); no scale write lands until the Lease has been renewed after
//! the outage (a write held during the outage and landing when the apiserver returns would be a
//! decision taken without the Lease); leadership is given up before the Lease could expire —
//! counted from the last renewal seen before the freeze, so the margin is conservative; after
//! the thaw the Lease is renewed and the new EndpointSlice routed within one renew period.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tidegate_tools::load::burst;
use tidegate_tools::load::held::{self, Held};
use tokio::time::Instant;

use super::{echo_backends, human, wait_until};
use crate::soak::apiserver::Apiserver;
use crate::soak::proxy::{ConfigFile, Proxy};
use crate::soak::{Context, Error, Figure, Outcome};

const NS: &str = "tidegate-soak";
const SERVICE: &str = "echo";
const LEASE: &str = "tidegate-soak";
const IDENTITY: &str = "soak-edge";
/// Cap per backend.
const CAP: u64 = 100;
/// WebSockets before the outage.
const HELD: usize = 150;
/// WebSockets arriving during it.
const ARRIVING: usize = 100;
/// How often the state, the Lease and the Deployment are looked at around the outage.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// What the leadership figure waits for.
const NEEDS: &str = "needs the leadership fixes of issue 11 (with peers)";

/// The Lease timing and the outage length of a run.
struct Timing {
    lease: Duration,
    renew: Duration,
    outage: Duration,
}

/// What was seen during and after the outage.
#[derive(Default)]
struct Seen {
    /// Wall-clock time of the last renewal seen before the freeze.
    last_renewal: Option<SystemTime>,
    frozen_at: Option<SystemTime>,
    gave_up: Option<SystemTime>,
    capacity_min: u64,
    stalled: u64,
    arrived: usize,
    arrivals_failed: u64,
    desired_max: u32,
    thawed_at: Option<(SystemTime, Instant)>,
    renewed_after: Option<Duration>,
    leading_after: Option<Duration>,
    wrote_after: Option<Duration>,
    new_slice_after: Option<Duration>,
    replicas: (i32, i32),
}

/// Runs the outage.
pub async fn run(ctx: &Context) -> Result<Outcome, Error> {
    let Some(scripts) = ctx.k8s_scripts.clone() else {
        let mut out = Outcome::default();
        out.push(Figure::skipped(
            "kube-apiserver outage",
            "not run".into(),
            "-",
            "needs ../shared/k8s (the kube-apiserver tier)",
        ));
        return Ok(out);
    };
    let timing = ctx.plan.pick(
        Timing {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(5),
            outage: Duration::from_secs(60),
        },
        Timing {
            lease: Duration::from_secs(6),
            renew: Duration::from_secs(2),
            outage: Duration::from_secs(20),
        },
    );
    let api = Apiserver::start(ctx, &scripts).await?;
    api.namespace(NS).await?;
    api.deployment(NS, SERVICE, 3).await?;
    let (_backends, addrs) = echo_backends(ctx, "outage backend", 4).await?;
    for (i, &a) in addrs.iter().take(3).enumerate() {
        api.slice(NS, SERVICE, &format!("echo-{i}"), a).await?;
    }
    let proxy = Proxy::start(ctx, "outage-proxy", &config(&api, &timing), None).await?;
    wait_until(
        "leading, with three backends",
        Duration::from_secs(60),
        || async {
            let s = proxy.state().await?;
            Ok(s.scaler.is_some_and(|v| v.leader) && s.totals.capacity == 3 * CAP)
        },
    )
    .await?;
    let held = super::echoing(&proxy, HELD).await?;
    let mut seen = Seen {
        capacity_min: u64::MAX,
        ..Seen::default()
    };
    seen.last_renewal = watch_renewals(&api, timing.renew + Duration::from_secs(1)).await?;
    let (before, _) = api.replicas(NS, SERVICE).await?;
    api.freeze(true)?;
    seen.frozen_at = Some(SystemTime::now());
    let during = outage(&proxy, &held, &timing, &mut seen).await;
    let thawed = api.freeze(false);
    seen.thawed_at = Some((SystemTime::now(), Instant::now()));
    let arrivals = during?;
    thawed?;
    after(&api, &proxy, &addrs[3], &timing, &mut seen).await?;
    seen.replicas = (before, api.replicas(NS, SERVICE).await?.0);
    let (counts, _) = held.close().await;
    if let Some(a) = arrivals {
        a.close().await;
    }
    Ok(figures(&timing, &seen, counts, ctx.features.peers))
}

fn config(api: &Apiserver, t: &Timing) -> ConfigFile {
    let s = |d: Duration| format!("{}ms", d.as_millis());
    ConfigFile::new(&[], CAP as u32)
        .with(format!(
            "backends: {{kubernetes: {{namespace: {NS}, service: {SERVICE}, port: ws}}}}"
        ))
        .with(format!(
            "kube_client: {{kubeconfig: \"{}\", context: local}}",
            api.kubeconfig.display()
        ))
        .with(format!(
            "scaler: {{min_replicas: 3, max_replicas: 6, boot_time: 5s, deployment: {{namespace: {NS}, name: {SERVICE}}}}}"
        ))
        .with(format!(
            "leader_election: {{namespace: {NS}, lease_name: {LEASE}, lease_duration: {}, renew_period: {}, identity: {IDENTITY}}}",
            s(t.lease),
            s(t.renew)
        ))
}

/// Reads the Lease every 100 ms for `span`; returns the newest `renewTime` seen.
async fn watch_renewals(api: &Apiserver, span: Duration) -> Result<Option<SystemTime>, Error> {
    let end = Instant::now() + span;
    let mut newest = None;
    while Instant::now() < end {
        if let Some((holder, at)) = api.lease(NS, LEASE).await?
            && holder == IDENTITY
        {
            newest = newest.max(Some(at));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    Ok(newest)
}

/// Looks at the proxy every 100 ms while the apiserver is frozen; sends the arrivals.
async fn outage(
    proxy: &Proxy,
    held: &Held,
    t: &Timing,
    seen: &mut Seen,
) -> Result<Option<burst::Burst>, Error> {
    let start = Instant::now();
    let arrive_at = start + t.outage / 4;
    let mut arrived = None;
    while start.elapsed() < t.outage {
        let s = proxy.state().await?;
        let leading = s.scaler.as_ref().is_some_and(|v| v.leader);
        if !leading && seen.gave_up.is_none() {
            seen.gave_up = Some(SystemTime::now());
        }
        seen.desired_max = seen
            .desired_max
            .max(s.scaler.map_or(0, |v| v.desired_replicas));
        seen.capacity_min = seen.capacity_min.min(s.totals.capacity);
        seen.stalled = seen.stalled.max(held.counts().stalled);
        if arrived.is_none() && Instant::now() >= arrive_at {
            let b = burst::run(
                &proxy.endpoint(),
                &burst::Config {
                    attempts: ARRIVING,
                    concurrency: 16,
                    limit: Duration::from_secs(5),
                },
            )
            .await;
            seen.arrived = b.opened.len();
            seen.arrivals_failed = b.failures.total();
            arrived = Some(b);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    // The arrivals stay open until after the thaw.
    Ok(arrived)
}

/// After the thaw: when the Lease is renewed, the proxy leads, the Deployment is written, and
/// the fourth backend's new EndpointSlice is routed.
async fn after(
    api: &Apiserver,
    proxy: &Proxy,
    fourth: &SocketAddr,
    t: &Timing,
    seen: &mut Seen,
) -> Result<(), Error> {
    let (thawed, clock) = seen
        .thawed_at
        .unwrap_or((SystemTime::now(), Instant::now()));
    let (_, version_before) = api.replicas(NS, SERVICE).await?;
    api.slice(NS, SERVICE, "echo-3", *fourth).await?;
    let sliced = Instant::now();
    let limit = (t.renew * 3).max(Duration::from_secs(15));
    while clock.elapsed() < limit {
        let renewed = api
            .lease(NS, LEASE)
            .await?
            .is_some_and(|(holder, at)| holder == IDENTITY && at >= thawed);
        if renewed && seen.renewed_after.is_none() {
            seen.renewed_after = Some(clock.elapsed());
        }
        let s = proxy.state().await?;
        if s.scaler.as_ref().is_some_and(|v| v.leader) && seen.leading_after.is_none() && renewed {
            seen.leading_after = Some(clock.elapsed());
        }
        if s.backend(*fourth).is_some() && seen.new_slice_after.is_none() {
            seen.new_slice_after = Some(sliced.elapsed());
        }
        let (_, version) = api.replicas(NS, SERVICE).await?;
        if version != version_before && seen.wrote_after.is_none() {
            seen.wrote_after = Some(clock.elapsed());
        }
        if seen.leading_after.is_some()
            && seen.new_slice_after.is_some()
            && seen.wrote_after.is_some()
        {
            break;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    Ok(())
}

fn since(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<Duration> {
    a?.duration_since(b?).ok()
}

fn figures(t: &Timing, seen: &Seen, counts: held::Counts, fixed: bool) -> Outcome {
    let mut out = Outcome::default();
    out.push(Figure::info(
        "load",
        format!(
            "{HELD} WebSockets echoing once a second over 3 EndpointSlice backends capped at {CAP}; \
             etcd + kube-apiserver SIGSTOPped {}; {ARRIVING} more clients a quarter in; Lease {} / renew {}",
            human(t.outage),
            human(t.lease),
            human(t.renew)
        ),
    ));
    out.push(Figure::check(
        "serving continues on the last endpoints",
        format!(
            "{} dropped, {} stalled at most, {} overdue; {} of {ARRIVING} arrivals placed ({} failed); capacity {} throughout",
            counts.dropped,
            seen.stalled,
            counts.overdue,
            seen.arrived,
            seen.arrivals_failed,
            seen.capacity_min
        ),
        "0 dropped, 0 stalled, every arrival placed, capacity unchanged",
        counts.dropped == 0
            && seen.stalled == 0
            && counts.overdue == 0
            && seen.arrived == ARRIVING
            && seen.capacity_min == 3 * CAP,
    ));
    let early_write = match (seen.wrote_after, seen.renewed_after) {
        (Some(w), Some(r)) => w < r,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let write_value = format!(
        "replicas {} → {}; the scaler asked for {} during the outage; {}",
        seen.replicas.0,
        seen.replicas.1,
        seen.desired_max,
        match (seen.wrote_after, seen.renewed_after) {
            (Some(w), Some(r)) => format!(
                "the Deployment changed {} after the thaw, the Lease was renewed {} after it",
                human(w),
                human(r)
            ),
            (Some(w), None) => format!(
                "the Deployment changed {} after the thaw, the Lease was not renewed",
                human(w)
            ),
            (None, _) => "the Deployment did not change".to_owned(),
        }
    );
    let write_rule = "no write lands before the Lease is renewed after the outage";
    out.push(if fixed {
        Figure::check(
            "no scale write lands",
            write_value,
            write_rule,
            !early_write,
        )
    } else {
        Figure::skipped("no scale write lands", write_value, write_rule, NEEDS)
    });
    let held_for = since(seen.gave_up, seen.last_renewal);
    let lead_value = match (held_for, seen.gave_up) {
        (Some(d), _) => format!(
            "leadership given up {} after the last renewal seen (the Lease expires {} after it)",
            human(d),
            human(t.lease)
        ),
        (None, None) => format!("still leading at the end of the {} outage", human(t.outage)),
        (None, Some(_)) => "no renewal seen before the freeze".to_owned(),
    };
    let lead_rule = "given up before renewal + lease_duration";
    let given_up = held_for.is_some_and(|d| d < t.lease);
    out.push(if fixed {
        Figure::check(
            "leadership given up before the Lease could expire",
            lead_value,
            lead_rule,
            given_up,
        )
    } else {
        Figure::skipped(
            "leadership given up before the Lease could expire",
            lead_value,
            lead_rule,
            NEEDS,
        )
    });
    let resumed = |d: Option<Duration>| d.map_or("never".to_owned(), human);
    out.push(Figure::check(
        "resumes within one renew period",
        format!(
            "after the thaw: Lease renewed and leading after {}, the new EndpointSlice routed {} after its creation",
            resumed(seen.leading_after),
            resumed(seen.new_slice_after)
        ),
        &format!("both ≤ {} (renew_period)", human(t.renew)),
        seen.leading_after.is_some_and(|d| d <= t.renew)
            && seen.new_slice_after.is_some_and(|d| d <= t.renew),
    ));
    out
}
