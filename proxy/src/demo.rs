//! `tidegate demo`: the whole loop on one machine — the proxy, a pool of local echo backends,
//! the scaler, and a load generator following a profile — with the status page to watch it.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::Ordering;

use tidegate_scaler::config::TidegatePolicyConfig;
use tidegate_tools::load::{Endpoint, Population, Profile, population};

use crate::config::{Config, LocalBackends, ScalerSection};
use crate::server::App;

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
}

impl Demo {
    /// The demo's config: small caps, a boot delay, and scale-down pacing fit for minutes, not
    /// hours.
    pub fn config(&self) -> Config {
        let policy = TidegatePolicyConfig {
            surge_hold: Duration::from_secs(10),
            scale_down_window: Duration::from_secs(20),
            scale_down_interval: Duration::from_secs(5),
            storm_window: Duration::from_secs(20),
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

    /// Runs the demo until its duration passes or Ctrl-C / SIGTERM; stops every child on the way out.
    pub fn run(&self) -> anyhow::Result<()> {
        let profile = Profile::parse(&self.load, self.peak)?;
        let config = self.config();
        config.validate()?;
        let proxy = App::build(config)?.spawn();
        println!("tidegate demo");
        println!("  traffic      ws://{}/", proxy.traffic_addr);
        println!("  status page  http://{}/", proxy.admin_addr);
        println!("  metrics      http://{}/metrics", proxy.admin_addr);
        println!("  state        http://{}/api/v1/state", proxy.admin_addr);
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
        // Start the load once the first backends take connections, as clients would find them.
        let ready_by = std::time::Instant::now() + self.boot_delay + Duration::from_secs(30);
        while !proxy.handles.proxy.table.has_eligible() && std::time::Instant::now() < ready_by {
            std::thread::sleep(Duration::from_millis(50));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let clients = Population::new(population::Plan {
            target: Endpoint::parse(&format!("ws://{}/", proxy.traffic_addr))?,
            profile,
            period: self.period,
            duration: self.duration,
            report: true,
        });
        let counters = runtime.block_on(clients.run(tidegate_tools::signals::terminated()));
        drop(runtime);
        let summary = proxy.handles.admin.state();
        proxy.stop_gracefully();
        println!(
            "demo done: peak {} connections open, {} refused, {} backends at the end; all backends stopped",
            counters.peak.load(Ordering::Relaxed),
            counters.refused.load(Ordering::Relaxed),
            summary.backends.len(),
        );
        Ok(())
    }
}
