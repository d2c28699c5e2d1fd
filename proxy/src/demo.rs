//! `tidegate demo`: the whole loop on one machine — the proxy, a pool of local echo backends,
//! the scaler, and a load generator following a profile — with the status page to watch it.
//!
//! With `--edges N`, N edges run in this process as one cluster: edge 0 runs the pool and the
//! scaler; the others take the pool's backends from edge 0 through the peer exchange
//! (`backends.from_peers`) — the backends are edge 0's processes, so that is where a second
//! edge must learn them, and it is how an edge beside a local pool works outside the demo too.
//! Every edge lists every edge's admin address as a static peer, on consecutive ports from
//! `--listen` and `--admin-listen`, and the load is spread over all of them in turn.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::Ordering;

use tidegate_scaler::config::TidegatePolicyConfig;
use tidegate_tools::load::{Endpoint, Population, Profile, population};

use crate::config::{Config, LocalBackends, ScalerSection};
use crate::server::{App, Running};

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct Demo {
    /// Traffic listener.
    pub listen: SocketAddr,
    /// Admin listener (status page at `/`).
    pub admin_listen: SocketAddr,
    /// Load profile: `ramp`, `surge`, `storm`, `none` or a CSV file.
    pub load: String,
    /// Most connections the load reaches.
    pub peak: u64,
    /// One pass of the load profile (it repeats).
    pub period: Duration,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Per-backend cap.
    pub capacity: u32,
    /// Artificial boot delay of each backend.
    pub boot_delay: Duration,
    /// Most backends.
    pub max_replicas: u32,
    /// Edges (proxy replicas) sharing the pool, on consecutive ports.
    pub edges: u16,
}

/// How a demo went, as its load generator saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Most connections open at once.
    pub peak: u64,
    /// Upgrades the edge refused (each retry counts).
    pub refused: u64,
    /// Open connections cut by anything but the load generator itself.
    pub dropped: u64,
    /// Backends at the end.
    pub backends: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = 100.0 * self.refused as f64 / self.peak.max(1) as f64;
        write!(
            f,
            "demo done: peak {} connections open, {} refused ({share:.1}% of peak), {} dropped, \
             {} backends at the end; all backends stopped",
            self.peak, self.refused, self.dropped, self.backends
        )
    }
}

/// Most edges the demo runs.
pub const MAX_EDGES: u16 = 8;

impl Demo {
    /// Edge `i`'s traffic and admin addresses.
    fn addresses(&self, i: u16) -> (SocketAddr, SocketAddr) {
        let at = |a: SocketAddr| SocketAddr::new(a.ip(), a.port().saturating_add(i));
        (at(self.listen), at(self.admin_listen))
    }

    /// Every edge's config: edge 0's is [`Demo::config`]; with several edges each lists every
    /// edge as a peer, and the others take their backends from the peers.
    pub fn configs(&self) -> anyhow::Result<Vec<Config>> {
        if self.edges == 0 || self.edges > MAX_EDGES {
            anyhow::bail!("--edges: between 1 and {MAX_EDGES}");
        }
        if self.edges == 1 {
            return Ok(vec![self.config()]);
        }
        let last =
            u32::from(self.listen.port().max(self.admin_listen.port())) + u32::from(self.edges);
        if self.listen.port() == 0 || self.admin_listen.port() == 0 || last > 65535 {
            anyhow::bail!("--edges above 1 needs fixed ports with room for one per edge");
        }
        let admins: Vec<SocketAddr> = (0..self.edges).map(|i| self.addresses(i).1).collect();
        let peers = crate::config::Peers {
            static_: admins,
            ..crate::config::Peers::default()
        };
        let first = Config {
            peers: Some(peers.clone()),
            ..self.config()
        };
        let mut out = vec![first.clone()];
        for i in 1..self.edges {
            let (listen, admin_listen) = self.addresses(i);
            let mut c = Config {
                listen,
                admin_listen,
                scaler: None,
                ..first.clone()
            };
            c.backends = crate::config::Backends {
                from_peers: true,
                ..Default::default()
            };
            out.push(c);
        }
        Ok(out)
    }

    /// The demo's config (edge 0's): small caps, a boot delay, and the policy's time constants
    /// scaled to a pass of minutes and backends that boot in seconds (the defaults are for pods
    /// that boot in 15–120 s): trend windows from 4 s to 30 s whose noise is learnt over two
    /// minutes, and growth of up to 10 %/s believed. The forecast may reach twice the demand:
    /// the surge profile grows ×1.8 in one horizon (8 %/s for 7.5 s), and anything more is pods
    /// that stand by empty.
    pub fn config(&self) -> Config {
        let secs = Duration::from_secs;
        let policy = TidegatePolicyConfig {
            surge_hold: secs(10),
            scale_down_window: secs(20),
            scale_down_interval: secs(5),
            storm_window: secs(20),
            trend_shortest: secs(4),
            trend_longest: secs(30),
            trend_noise_window: secs(120),
            envelope_window: secs(10),
            forecast_error_window: secs(120),
            serving_window: secs(10),
            serving_horizon: secs(2),
            max_growth_rate: 0.1,
            max_forecast_growth: 2.0,
            ..TidegatePolicyConfig::default()
        };
        Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            max_connections_per_backend: self.capacity,
            queue_timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
            grace_period: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(2),
            // The demo's own load generator is stopped first: no load balancer to wait for.
            shutdown_delay: Duration::ZERO,
            backends: crate::config::Backends {
                local: Some(LocalBackends {
                    boot_delay: self.boot_delay,
                    drain_grace: Duration::from_secs(20),
                    stop_timeout: Duration::from_secs(2),
                    initial: 2,
                    ..LocalBackends::default()
                }),
                ..Default::default()
            },
            scaler: Some(ScalerSection {
                min_replicas: 2,
                max_replicas: self.max_replicas,
                boot_time: self.boot_delay + Duration::from_secs(1),
                dry_run: false,
                deployment: None,
                policy,
            }),
            ..Config::default()
        }
    }

    /// Runs the demo until its duration passes or Ctrl-C / SIGTERM; stops every child on the
    /// way out.
    pub fn run(&self) -> anyhow::Result<Summary> {
        let profile = Profile::parse(&self.load, self.peak)?;
        let configs = self.configs()?;
        for c in &configs {
            c.validate()?;
        }
        let edges: Vec<Running> = configs
            .into_iter()
            .map(|c| App::build(c).map(App::spawn))
            .collect::<Result<_, _>>()?;
        self.print_start(&edges);
        // Start the load once the first backends take connections, as clients would find them.
        let ready_by = std::time::Instant::now() + self.boot_delay + Duration::from_secs(30);
        let ready = || edges.iter().all(|e| e.handles.proxy.table.has_eligible());
        while !ready() && std::time::Instant::now() < ready_by {
            std::thread::sleep(Duration::from_millis(50));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let url = |e: &Running| Endpoint::parse(&format!("ws://{}/", e.traffic_addr));
        let others = edges
            .iter()
            .skip(1)
            .map(url)
            .collect::<Result<Vec<_>, _>>()?;
        let clients = Population::new(population::Plan {
            target: url(&edges[0])?,
            profile,
            period: self.period,
            duration: self.duration,
            report: true,
        })
        .spread_over(others);
        let counters = runtime.block_on(clients.run(tidegate_tools::signals::terminated()));
        drop(runtime);
        let state = edges[0].handles.admin.state();
        for e in edges.into_iter().rev() {
            e.stop_gracefully();
        }
        Ok(Summary {
            peak: counters.peak.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            backends: state.backends.len(),
        })
    }

    fn print_start(&self, edges: &[Running]) {
        println!("tidegate demo");
        for (i, e) in edges.iter().enumerate() {
            let name = if edges.len() == 1 {
                String::new()
            } else {
                format!(" (edge {i})")
            };
            println!("  traffic      ws://{}/{name}", e.traffic_addr);
            println!("  status page  http://{}/{name}", e.admin_addr);
            println!("  metrics      http://{}/metrics{name}", e.admin_addr);
            println!("  state        http://{}/api/v1/state{name}", e.admin_addr);
        }
        if edges.len() > 1 {
            println!(
                "  edges        {} sharing one pool: edge 0 runs it and the scaler; the load is spread over all",
                edges.len()
            );
        }
        println!(
            "  load         {} up to {} connections, {}s a pass, cap {} per backend, boot delay {}s",
            self.load,
            self.peak,
            self.period.as_secs(),
            self.capacity,
            self.boot_delay.as_secs()
        );
        match self.duration {
            Some(d) => println!("  stops after {}s (Ctrl-C stops earlier)", d.as_secs()),
            None => println!("  Ctrl-C stops"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(edges: u16) -> Demo {
        Demo {
            listen: "127.0.0.1:18080".parse().unwrap(),
            admin_listen: "127.0.0.1:19090".parse().unwrap(),
            load: "none".into(),
            peak: 10,
            period: Duration::from_secs(10),
            duration: None,
            capacity: 5,
            boot_delay: Duration::ZERO,
            max_replicas: 4,
            edges,
        }
    }

    #[test]
    fn two_edges_list_each_other_and_the_second_takes_the_pools_backends() {
        let configs = demo(2).configs().unwrap();
        assert_eq!(configs.len(), 2);
        for c in &configs {
            c.validate().unwrap();
            let peers = &c.peers.as_ref().unwrap().static_;
            assert_eq!(peers.len(), 2);
        }
        assert!(configs[0].backends.local.is_some() && configs[0].scaler.is_some());
        assert!(configs[1].backends.from_peers && configs[1].scaler.is_none());
        assert_eq!(configs[1].admin_listen.port(), 19091);
        assert_eq!(configs[1].listen.port(), 18081);
        assert!(
            demo(1).configs().unwrap()[0].peers.is_none(),
            "one edge: as before"
        );
        assert!(demo(0).configs().is_err() && demo(MAX_EDGES + 1).configs().is_err());
        let mut any_port = demo(2);
        any_port.listen = "127.0.0.1:0".parse().unwrap();
        assert!(
            any_port.configs().is_err(),
            "consecutive ports need a fixed first one"
        );
    }
}
