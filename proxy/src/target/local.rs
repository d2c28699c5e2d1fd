//! Local mode's [`ScaleTarget`]: backends run as child processes on 127.0.0.1.
//!
//! The pool is both the actuator and the discovery source of local mode: it starts and stops
//! the processes, and publishes those that passed their readiness probe
//! ([`crate::discovery::local`]) into the [`Catalog`], with its drain marks. Every 250 ms it
//! reconciles towards the desired count with the same drain-first plan the
//! cluster uses (`tidegate_scaler::drain::plan`): the emptiest processes are drained (no new
//! connections) and stopped once empty (SIGTERM, then SIGKILL after `stop_timeout`); one kept
//! only for its connections has its WebSockets closed with 1001 after `drain_grace`
//! ([`super::drain_grace`]), and is stopped if the close leaves connections it could not end;
//! drained capacity is handed back at once if demand returns. A process
//! that exits on its own is noticed, taken out of routing and replaced. On shutdown every child
//! is stopped; `kill_on_drop` is the backstop if the runtime goes first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tidegate_common::LoadSnapshot;
use tidegate_scaler::drain;
use tidegate_scaler::policy::{PodObservation, PodPhase};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{info, warn};

use super::ScaleTarget;
use super::drain_grace::DrainGrace;
use crate::config::LocalBackends;
use crate::dataplane::Connections;
use crate::discovery::{self, Catalog, Endpoint};

const RECONCILE_EVERY: Duration = Duration::from_millis(250);
/// Beyond the close timeout, how long a closed backend's relays get to end before what is left
/// is cut by stopping the process.
const CLOSE_MARGIN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Booting,
    Ready,
    Draining { since: Instant },
    Stopping { since: Instant },
}

struct Proc {
    id: u64,
    addr: SocketAddr,
    child: Child,
    started: Instant,
    phase: Phase,
}

/// A pool of local backend processes.
pub struct Pool {
    config: LocalBackends,
    program: String,
    catalog: Arc<Catalog>,
    desired: AtomicU32,
    serving: AtomicU32,
    remove_below: u32,
    grace: DrainGrace,
    close_timeout: Duration,
    procs: Mutex<Vec<Proc>>,
    next_id: AtomicU32,
    next_port: AtomicU32,
}

impl Pool {
    /// A pool publishing into `catalog`; starts `config.initial` processes on its first
    /// reconcile. Draining processes with at most `remove_below` connections may be removed;
    /// those kept for more have them closed through `connections` after `drain_grace`, and
    /// are stopped `close_timeout` later if some are left.
    pub fn new(
        config: LocalBackends,
        remove_below: u32,
        catalog: Arc<Catalog>,
        connections: Arc<Connections>,
        close_timeout: Duration,
    ) -> Self {
        let program =
            std::env::current_exe().map_or_else(|_| "tidegate".into(), |p| p.display().to_string());
        let (desired, first_port) = (config.initial, u32::from(config.port_range[0]));
        let grace = DrainGrace::new(config.drain_grace, connections);
        Self {
            config,
            program,
            catalog,
            desired: AtomicU32::new(desired),
            serving: AtomicU32::new(desired),
            remove_below,
            grace,
            close_timeout,
            procs: Mutex::new(Vec::new()),
            next_id: AtomicU32::new(1),
            next_port: AtomicU32::new(first_port),
        }
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// PIDs of the running children (for tests that check nothing is left behind).
    pub fn pids(&self) -> Vec<u32> {
        self.procs().iter().filter_map(|p| p.child.id()).collect()
    }

    /// One reconcile step; `now` is passed in so tests can drive it.
    pub async fn reconcile(&self, now: Instant) {
        let booted = self.booted_candidates(now);
        let mut ready = Vec::new();
        for (id, addr) in booted {
            if discovery::local::probe(addr, &self.config.readiness).await {
                ready.push(id);
            }
        }
        let load = self
            .catalog
            .table()
            .load_snapshot(std::time::Instant::now());
        let mut procs = self.procs();
        let serving = self.serving.load(Ordering::Acquire) as usize;
        for id in ready {
            let routed = procs.iter().filter(|p| p.phase == Phase::Ready).count();
            let Some(p) = procs
                .iter_mut()
                .find(|p| p.id == id && p.phase == Phase::Booting)
            else {
                continue;
            };
            // A new backend beyond what should serve starts as empty standby capacity: the
            // plan routes to it when it is wanted, so it never fills only to be drained.
            p.phase = if routed < serving {
                Phase::Ready
            } else {
                Phase::Draining { since: now }
            };
            info!(id = p.id, backend = %p.addr, standby = routed >= serving, "local backend ready");
        }
        reap(&mut procs);
        let pods = observations(&procs, &load);
        let plan = drain::plan(
            &pods,
            self.desired.load(Ordering::Acquire),
            self.serving.load(Ordering::Acquire),
            self.remove_below,
        );
        self.apply(&mut procs, &plan, &load, now);
        self.publish(&procs);
    }

    fn booted_candidates(&self, now: Instant) -> Vec<(u64, SocketAddr)> {
        self.procs()
            .iter()
            .filter(|p| p.phase == Phase::Booting && now >= p.started + self.config.boot_delay)
            .map(|p| (p.id, p.addr))
            .collect()
    }

    /// Carries out the plan: drain, undrain, remove; closes what is overdue; then starts or
    /// cancels processes so that `plan.replicas` remain.
    fn apply(&self, procs: &mut Vec<Proc>, plan: &drain::Plan, load: &LoadSnapshot, now: Instant) {
        for p in procs.iter_mut() {
            match p.phase {
                Phase::Ready if plan.drain.contains(&p.id) => {
                    info!(id = p.id, backend = %p.addr, "draining local backend");
                    p.phase = Phase::Draining { since: now };
                }
                Phase::Draining { .. } if plan.undrain.contains(&p.id) => p.phase = Phase::Ready,
                Phase::Draining { .. } if plan.remove.contains(&p.id) => stop(p, now),
                Phase::Stopping { since } if now >= since + self.config.stop_timeout => {
                    let _ = p.child.start_kill();
                }
                _ => {}
            }
        }
        // Processes stopped for what their close left are not replaced.
        let replicas = plan
            .replicas
            .saturating_sub(self.close_overdue(procs, plan, load, now));
        let kept = procs
            .iter()
            .filter(|p| !matches!(p.phase, Phase::Stopping { .. }))
            .count() as u32;
        if replicas > kept {
            let mut in_use: Vec<u16> = procs.iter().map(|p| p.addr.port()).collect();
            for _ in kept..replicas {
                match self.spawn(now, &in_use) {
                    Ok(p) => {
                        in_use.push(p.addr.port());
                        procs.push(p);
                    }
                    Err(e) => warn!(error = %e, "cannot start a local backend"),
                }
            }
            return;
        }
        let mut excess = kept - replicas;
        // Cancel booting processes first, newest first: they hold no connections.
        for p in procs.iter_mut().rev().filter(|p| p.phase == Phase::Booting) {
            if excess == 0 {
                return;
            }
            stop(p, now);
            excess -= 1;
        }
    }

    /// Draining processes kept only for their connections (`plan.replicas` above what is
    /// desired): past `drain_grace` their WebSockets are closed with 1001; a process still
    /// holding connections `close_timeout` after that (pingora-path tunnels, which cannot take
    /// a close frame) is stopped. Returns how many were stopped.
    fn close_overdue(
        &self,
        procs: &mut [Proc],
        plan: &drain::Plan,
        load: &LoadSnapshot,
        now: Instant,
    ) -> u32 {
        let stuck = plan
            .replicas
            .saturating_sub(self.desired.load(Ordering::Acquire));
        let draining = |p: &Proc| matches!(p.phase, Phase::Draining { .. });
        let addrs = procs.iter().filter(|p| draining(p)).map(|p| p.addr);
        self.grace.apply(addrs, load, stuck as usize, now);
        let late = self.close_timeout + CLOSE_MARGIN;
        let mut stopped = 0;
        for p in procs
            .iter_mut()
            .filter(|p| draining(p) && live_of(load, p.addr) > 0)
        {
            if self
                .grace
                .closed_at(p.addr)
                .is_some_and(|at| now >= at + late)
            {
                warn!(id = p.id, backend = %p.addr, "connections left after the 1001 close: stopping");
                stop(p, now);
                stopped += 1;
            }
        }
        stopped
    }

    fn spawn(&self, now: Instant, in_use: &[u16]) -> std::io::Result<Proc> {
        let id = u64::from(self.next_id.fetch_add(1, Ordering::AcqRel));
        let port = self.free_port(in_use)?;
        let default = format!("{} echo-backend --listen 127.0.0.1:{{port}}", self.program);
        let template = self.config.command.clone().unwrap_or(default);
        let line = template
            .replace("{port}", &port.to_string())
            .replace("{id}", &id.to_string());
        let mut words = line.split_whitespace();
        let program = words
            .next()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let child = Command::new(program)
            .args(words)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        info!(id, backend = %addr, pid = ?child.id(), "started local backend");
        Ok(Proc {
            id,
            addr,
            child,
            started: now,
            phase: Phase::Booting,
        })
    }

    /// The next port in the range that binds now (the child binds it right after).
    fn free_port(&self, in_use: &[u16]) -> std::io::Result<u16> {
        let [first, last] = self.config.port_range;
        let span = u32::from(last - first) + 1;
        for _ in 0..span {
            let n = self.next_port.fetch_add(1, Ordering::AcqRel);
            let port = first + ((n - u32::from(first)) % span) as u16;
            if !in_use.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err(std::io::Error::other(format!(
            "no free port in {first}-{last}"
        )))
    }

    /// Publishes the ready and draining processes (draining ones get nothing new).
    fn publish(&self, procs: &[Proc]) {
        let up = |p: &&Proc| matches!(p.phase, Phase::Ready | Phase::Draining { .. });
        let draining = procs
            .iter()
            .filter(|p| matches!(p.phase, Phase::Draining { .. }))
            .map(|p| p.addr)
            .collect();
        let endpoints = procs.iter().filter(up).map(|p| Endpoint::ready(p.addr));
        self.catalog.update(endpoints.collect(), draining);
    }

    /// Stops every child: SIGTERM, then SIGKILL after `stop_timeout`.
    pub async fn stop_all(&self) {
        let deadline = Instant::now() + self.config.stop_timeout;
        let mut children: Vec<Child> = {
            let mut procs = self.procs();
            procs.iter_mut().for_each(|p| stop(p, Instant::now()));
            procs.drain(..).map(|p| p.child).collect()
        };
        self.catalog.update(Vec::new(), Default::default());
        for child in &mut children {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        info!(count = children.len(), "stopped local backends");
    }
}

/// Live + pending on `addr` over every replica (a backend empty here may be full on a peer).
fn live_of(load: &LoadSnapshot, addr: SocketAddr) -> u32 {
    load.backends
        .iter()
        .find(|b| b.address == addr)
        .map_or(0, |b| b.cluster_occupied)
}

fn stop(p: &mut Proc, now: Instant) {
    if !matches!(p.phase, Phase::Stopping { .. }) {
        info!(id = p.id, backend = %p.addr, "stopping local backend");
        p.phase = Phase::Stopping { since: now };
        if let Some(pid) = p.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Drops exited children; one that exits unasked is logged (and replaced by the plan).
fn reap(procs: &mut Vec<Proc>) {
    procs.retain_mut(|p| match p.child.try_wait() {
        Ok(Some(status)) => {
            if !matches!(p.phase, Phase::Stopping { .. }) {
                warn!(id = p.id, backend = %p.addr, %status, "local backend exited unexpectedly; replacing it");
            }
            false
        }
        _ => true,
    });
}

fn observations(procs: &[Proc], load: &LoadSnapshot) -> Vec<PodObservation> {
    let live: HashMap<SocketAddr, u32> = load
        .backends
        .iter()
        .map(|b| (b.address, b.cluster_occupied))
        .collect();
    procs
        .iter()
        .filter_map(|p| {
            let phase = match p.phase {
                Phase::Booting => PodPhase::Booting,
                Phase::Ready => PodPhase::Ready,
                Phase::Draining { .. } => PodPhase::Draining,
                Phase::Stopping { .. } => return None,
            };
            Some(PodObservation {
                id: p.id,
                phase,
                connections: Some(live.get(&p.addr).copied().unwrap_or(0)),
            })
        })
        .collect()
}

impl ScaleTarget for Pool {
    fn pods(&self, load: &LoadSnapshot) -> Vec<PodObservation> {
        observations(&self.procs(), load)
    }

    fn desired(&self) -> u32 {
        self.desired.load(Ordering::Acquire)
    }

    fn set_desired(&self, replicas: u32, serving: u32) {
        self.serving.store(serving.min(replicas), Ordering::Release);
        self.desired.store(replicas, Ordering::Release);
    }
}

/// Runs [`Pool::reconcile`] until shutdown, then stops every child.
pub struct Supervisor(pub Arc<Pool>);

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticks = tokio::time::interval(RECONCILE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.0.reconcile(Instant::now()).await,
                _ = shutdown.changed() => break,
            }
        }
        self.0.stop_all().await;
    }
}
