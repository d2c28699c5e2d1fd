//! `tidegate demo`: the whole loop on one machine — the proxy, a pool of local echo backends,
//! the scaler, and a load generator following a profile — with the status page to watch it.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_scaler::config::TidegatePolicyConfig;

use crate::config::{Config, LocalBackends, ScalerSection};
use crate::loadgen::{Loadgen, Plan, Profile};
use crate::server;

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoPlan {
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

/// The demo's config: small caps, a boot delay, and the policy's time constants scaled to a
/// pass of minutes and backends that boot in seconds (the defaults are for pods that boot in
/// 15–120 s): trends over seconds, not minutes, and growth of up to 10 %/s believed.
pub fn config(plan: &DemoPlan) -> Config {
    let secs = Duration::from_secs;
    let policy = TidegatePolicyConfig {
        surge_hold: secs(10),
        scale_down_window: secs(20),
        scale_down_interval: secs(5),
        storm_window: secs(20),
        trend_window: secs(4),
        trend_long_window: secs(30),
        envelope_window: secs(10),
        forecast_error_window: secs(120),
        serving_window: secs(10),
        serving_horizon: secs(2),
        max_growth_rate: 0.1,
        surge_growth_rate: 0.02,
        max_forecast_growth: 3.0,
        ..TidegatePolicyConfig::default()
    };
    Config {
        listen: plan.listen,
        admin_listen: plan.admin_listen,
        max_connections_per_backend: plan.capacity,
        queue_timeout: Duration::from_secs(2),
        retry_after: Duration::from_secs(1),
        grace_period: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(2),
        backends: crate::config::Backends {
            local: Some(LocalBackends {
                boot_delay: plan.boot_delay,
                drain_grace: Duration::from_secs(20),
                stop_timeout: Duration::from_secs(2),
                initial: 2,
                ..LocalBackends::default()
            }),
            ..Default::default()
        },
        scaler: Some(ScalerSection {
            min_replicas: 2,
            max_replicas: plan.max_replicas,
            boot_time: plan.boot_delay + Duration::from_secs(1),
            dry_run: false,
            deployment: None,
            policy,
        }),
        ..Config::default()
    }
}

/// Runs the demo until its duration passes or Ctrl-C / SIGTERM; stops every child on the way out.
pub fn run(plan: &DemoPlan) -> anyhow::Result<()> {
    let profile = Profile::parse(&plan.load, plan.peak).map_err(anyhow::Error::msg)?;
    let config = config(plan);
    config.validate()?;
    let proxy = server::prepare(config)?.spawn();
    println!("tidegate demo");
    println!("  traffic      ws://{}/", proxy.traffic_addr);
    println!("  status page  http://{}/", proxy.admin_addr);
    println!("  metrics      http://{}/metrics", proxy.admin_addr);
    println!("  state        http://{}/api/v1/state", proxy.admin_addr);
    println!(
        "  load         {} up to {} connections, {}s a pass, cap {} per backend, boot delay {}s",
        plan.load,
        plan.peak,
        plan.period.as_secs(),
        plan.capacity,
        plan.boot_delay.as_secs()
    );
    match plan.duration {
        Some(d) => println!("  stops after {}s (Ctrl-C stops earlier)", d.as_secs()),
        None => println!("  Ctrl-C stops"),
    }
    // Start the load once the first backends take connections, as clients would find them.
    let ready_by = std::time::Instant::now() + plan.boot_delay + Duration::from_secs(30);
    while !proxy.shared.table.has_eligible() && std::time::Instant::now() < ready_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let loadgen = Loadgen::new(Plan {
        url: format!("ws://{}/", proxy.traffic_addr),
        profile,
        period: plan.period,
        duration: plan.duration,
        report: true,
    });
    let counters = runtime.block_on(loadgen.run(crate::signals::terminated()));
    drop(runtime);
    let summary = crate::admin::state(&proxy.shared);
    proxy.stop_gracefully();
    println!(
        "demo done: peak {} connections open, {} refused, {} backends at the end; all backends stopped",
        counters.peak.load(std::sync::atomic::Ordering::Relaxed),
        counters.refused.load(std::sync::atomic::Ordering::Relaxed),
        summary.backends.len(),
    );
    Ok(())
}
