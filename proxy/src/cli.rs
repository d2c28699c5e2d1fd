//! The `tidegate` command line: its subcommands and flags (each says what it does and its
//! default), and [`run`], which carries one out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{Args, Parser, Subcommand};
use tidegate_common::telemetry::{self, LogFormat};
use tidegate_tools::load::{Endpoint, Population, Profile, population};

use crate::config::{self, Config, StaticBackend};
use crate::demo::Demo;
use crate::server::App;

/// tidegate: a WebSocket-aware edge proxy that counts live connections per backend exactly,
/// routes each new one to the least-loaded backend under its cap, and scales the backends.
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (config from --config, flags override the file).
    Proxy(ProxyArgs),
    /// Check a config file: exit 0 if valid, else exit 1 naming the field and line.
    CheckConfig {
        /// The YAML config file to check.
        file: PathBuf,
    },
    /// Run a WebSocket echo server (also answers GET /healthz with 200).
    EchoBackend {
        /// Address to listen on (port 0 picks a free port and prints it).
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
    },
    /// Run the whole loop on this machine: proxy, local echo backends, scaler, and load.
    Demo(DemoArgs),
    /// Open and hold WebSockets following a connection-count profile.
    Loadgen(LoadgenArgs),
    /// Compare scaling policies on a demand trace in the simulator.
    Simulate(tidegate_scaler::sim::cli::SimulateArgs),
}

/// Flags of `tidegate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Load profile: ramp, surge, storm, none, or a CSV file of t_seconds,connections.
    #[arg(long, default_value = "surge")]
    pub load: String,
    /// Stop after this long, e.g. 120s; without it the demo runs until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Length of one pass of the load profile (it repeats).
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub period: Duration,
    /// Most connections the load reaches.
    #[arg(long, default_value_t = 1000)]
    pub peak: u64,
    /// Most live WebSockets per backend.
    #[arg(long, default_value_t = 100)]
    pub max_connections_per_backend: u32,
    /// Time each new backend takes to start (as a pod would).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub boot_delay: Duration,
    /// Most backends the scaler may run.
    #[arg(long, default_value_t = 30)]
    pub max_replicas: u32,
    /// Traffic listener address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listener address (the status page is at /).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Edges (proxy replicas) sharing the pool as one cluster, on consecutive ports from
    /// --listen and --admin-listen; the load is spread over them.
    #[arg(long, default_value_t = 1)]
    pub edges: u16,
}

impl DemoArgs {
    /// The demo these flags ask for.
    pub fn demo(&self) -> Demo {
        Demo {
            listen: self.listen,
            admin_listen: self.admin_listen,
            load: self.load.clone(),
            peak: self.peak,
            period: self.period,
            duration: self.duration,
            capacity: self.max_connections_per_backend,
            boot_delay: self.boot_delay,
            max_replicas: self.max_replicas,
            edges: self.edges,
        }
    }
}

/// Flags of `tidegate loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// WebSocket URL to connect to, e.g. ws://127.0.0.1:8080/.
    #[arg(long)]
    pub url: String,
    /// Profile: ramp, surge, storm, none, or a CSV file of t_seconds,connections.
    #[arg(long, default_value = "ramp")]
    pub profile: String,
    /// Most connections (scales the built-in profiles; CSV traces are used as written).
    #[arg(long, default_value_t = 1000)]
    pub peak: u64,
    /// Length of one pass of the profile (it repeats).
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub period: Duration,
    /// Stop after this long; without it, run until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// Flags of `tidegate proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// YAML config file; without it every setting has its default (see README).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Traffic listener address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listener address for /metrics, /healthz, /readyz, /api/v1/state
    /// [default: 127.0.0.1:9090].
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// A backend as ip:port; repeat for several. Replaces `backends.static` of the file.
    #[arg(long = "backend", value_name = "IP:PORT")]
    pub backends: Vec<SocketAddr>,
    /// Most live + pending WebSockets per backend [default: 1000].
    #[arg(long)]
    pub max_connections_per_backend: Option<u32>,
    /// Longest an upgrade waits for a slot when all backends are full, e.g. 5s; 0s answers
    /// 503 at once [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    pub queue_timeout: Option<Duration>,
    /// Idle timeout of upgraded WebSockets, e.g. 1h [default: 1h].
    #[arg(long, value_parser = parse_duration)]
    pub websocket_idle_timeout: Option<Duration>,
    /// Worker threads for client traffic [default: the cores this process may use, within a
    /// cgroup CPU limit].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log format: text or json [default: text]. The level comes from RUST_LOG (default info).
    #[arg(long)]
    pub log_format: Option<LogFormat>,
}

fn parse_duration(text: &str) -> Result<Duration, tidegate_common::duration::Error> {
    tidegate_common::duration::parse(text)
}

impl ProxyArgs {
    /// The config file (or the defaults) with the flags applied, validated.
    pub fn resolve(&self) -> Result<Config, config::Error> {
        let mut config = match &self.config {
            Some(path) => crate::config::load_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.admin_listen {
            config.admin_listen = v;
        }
        if !self.backends.is_empty() {
            config.backends.static_ = self
                .backends
                .iter()
                .map(|&address| StaticBackend {
                    address,
                    max_connections: None,
                })
                .collect();
        }
        if let Some(v) = self.max_connections_per_backend {
            config.max_connections_per_backend = v;
        }
        if let Some(v) = self.queue_timeout {
            config.queue_timeout = v;
        }
        if let Some(v) = self.websocket_idle_timeout {
            config.websocket_idle_timeout = v;
        }
        if let Some(v) = self.threads {
            config.threads = v;
        }
        if let Some(v) = self.log_format {
            config.log_format = v;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Carries out one command line; errors are printed as `tidegate: …` with exit status 1.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Proxy(args) => proxy(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::EchoBackend { listen } => {
            telemetry::init(LogFormat::Text);
            tidegate_tools::echo::run_blocking(listen).map_err(anyhow::Error::from)
        }
        Command::Demo(args) => {
            // The load lines and the scaler's decisions; the rest at RUST_LOG=info if wanted.
            telemetry::init_with_default(LogFormat::Text, "warn,tidegate_proxy::scaling=info");
            args.demo().run().map(|summary| println!("{summary}"))
        }
        Command::Loadgen(args) => loadgen(&args),
        Command::Simulate(args) => tidegate_scaler::sim::cli::run(&args)
            .map(|table| println!("{table}"))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidegate: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: some errors already print their cause in their own
/// message (a config file's parse error does, with the line and the snippet), and `{:#}` would
/// then print it twice.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// `tidegate check-config`: the file, then every TLS certificate pair it names (read, parsed,
/// key matched, hosts covered); the first fault is the error, naming its file.
fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = config::load_file(file)?;
    if let Some(section) = &config.tls {
        let pairs = crate::tls::load(section)?;
        for ((name, cert, _), pair) in section.pairs().zip(&pairs) {
            let expires = pair.not_after.map_or("unknown".into(), |t| {
                humantime::format_rfc3339(t).to_string()
            });
            println!(
                "tls certificate `{name}`: {} ok, expires {expires}",
                cert.display()
            );
        }
    }
    println!("{}: ok", file.display());
    Ok(())
}

/// `tidegate proxy`: builds the proxy from the config and flags, watches the config file, and
/// runs until a signal.
fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    telemetry::init(config.log_format);
    let mut app = App::build(config)?;
    if let Some(path) = args.config.clone() {
        app.watch_config(path, Box::new(move || args.resolve()))?;
    }
    tracing::info!(traffic = %app.traffic_addr, admin = %app.admin_addr, "tidegate proxy starting");
    app.run();
    Ok(())
}

/// `tidegate loadgen`: runs a client population in the foreground until its duration or Ctrl-C.
fn loadgen(args: &LoadgenArgs) -> anyhow::Result<()> {
    let plan = population::Plan {
        target: Endpoint::parse(&args.url)?,
        profile: Profile::parse(&args.profile, args.peak)?,
        period: args.period,
        duration: args.duration,
        report: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = tidegate_tools::signals::terminated();
    let c = runtime.block_on(Population::new(plan).run(stop));
    let get = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    println!(
        "done: peak {} open, {} refused, {} failed, {} dropped",
        get(&c.peak),
        get(&c.refused),
        get(&c.failed),
        get(&c.dropped)
    );
    Ok(())
}
