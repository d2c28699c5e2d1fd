//! `wsbench`: the command-line front of tidegate's load generator (`tidegate_tools::load`) for
//! the side-by-side benchmarks. Loopback targets only: every load it makes stays on the machine.
//!
//! Each scenario prints one JSON line on stdout (see `tidegate_tools::load::Outcome`); `table`
//! turns a file of such lines, as `benches/peers.sh` collects them, into a markdown table.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::{net::TcpListener, path::PathBuf, time::Duration};
use tidegate_benches::table;
use tidegate_tools::load::secure::Tls;
use tidegate_tools::load::{Outcome, endpoint::Endpoint, handshakes, idle, latency, throughput};

/// WebSocket load client: idle memory, handshake cost, latency and throughput of a proxy.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Tokio worker threads in the client (default 1: leave the other core to the proxy).
    #[arg(long, global = true, default_value_t = 1)]
    client_threads: usize,
    /// CA certificates (PEM) to trust for wss:// targets; the server is verified as the URL's
    /// IP address, which its certificate must list (default: none, ws:// only).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open idle WebSockets and report the proxy's RSS growth per connection.
    Idle(IdleArgs),
    /// Loop WebSocket open + close and report proxy CPU per 1,000 upgrades.
    Handshakes(HandshakeArgs),
    /// Send small messages at a fixed aggregate rate and report round-trip percentiles.
    Latency(LatencyArgs),
    /// Pump pipelined binary echoes and report messages/s and proxy CPU per million.
    Throughput(ThroughputArgs),
    /// Run the echo backend (the same one as `tidegate echo-backend`), for when no tidegate
    /// binary is at hand; loopback only.
    Echo {
        /// Address to listen on, e.g. 127.0.0.1:9001.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Write a test CA and an ECDSA P-256 and an RSA 2048 certificate for localhost and
    /// 127.0.0.1 into a directory (benchmarks only).
    Certs {
        /// The directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print N currently free TCP ports on 127.0.0.1, one per line.
    FreePorts {
        /// How many ports (default 1).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Render a JSON-lines results file from benches/peers.sh as a markdown table.
    Table {
        /// The results file (lines of {"target":..,"repeat":..,"result":{..}}).
        #[arg(long)]
        input: PathBuf,
        /// Columns in order, comma-separated (default direct,haproxy,nginx,tidegate).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "direct,haproxy,nginx,tidegate"
        )]
        targets: Vec<String>,
        /// The column ratios refer to (default haproxy).
        #[arg(long, default_value = "haproxy")]
        baseline: String,
    },
}

fn duration(text: &str) -> Result<Duration, tidegate_common::duration::Error> {
    tidegate_common::duration::parse(text)
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    url: String,
    /// Connection counts to measure at, cumulative, comma-separated, e.g. 1000,5000,9900.
    #[arg(long, value_delimiter = ',', required = true)]
    connections: Vec<usize>,
    /// PID of the proxy process whose VmRSS is read.
    #[arg(long)]
    pid: u32,
    /// Settle time after a step's connections are open, before RSS is read (default 5s).
    #[arg(long, value_parser = duration, default_value = "5s")]
    hold: Duration,
    /// Handshakes in flight at once while opening (default 256).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Connections opened, echoed on and closed before the baseline RSS is read (default 10).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
}

#[derive(Debug, Args)]
struct HandshakeArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    url: String,
    /// How long to loop (default 10s).
    #[arg(long, value_parser = duration, default_value = "10s")]
    duration: Duration,
    /// Handshakes in flight at once (default 32).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many handshakes even if time remains (default 100000).
    #[arg(long, default_value_t = 100_000)]
    max: u64,
    /// PID of the proxy process whose CPU time is read (omit for none).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    url: String,
    /// Connections sharing the rate (default 100).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Aggregate messages per second (default 2000).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// How long to send (default 10s).
    #[arg(long, value_parser = duration, default_value = "10s")]
    duration: Duration,
    /// Message size in bytes, at least 8 (default 32).
    #[arg(long, default_value_t = 32)]
    size: usize,
}

#[derive(Debug, Args)]
struct ThroughputArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    url: String,
    /// Connections sharing the messages (default 16).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Message size in bytes (default 4096).
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Messages in all, each sent and echoed once (default 1000000).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Messages in flight per connection (default 32).
    #[arg(long, default_value_t = 32)]
    window: u64,
    /// PID of the proxy process whose CPU time is read (omit for none).
    #[arg(long)]
    pid: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Echo { listen } = cli.command {
        anyhow::ensure!(
            listen.ip().is_loopback(),
            "--listen must be a loopback address"
        );
        return Ok(tidegate_tools::echo::run_blocking(listen)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let ca = cli.ca.clone();
    runtime.block_on(dispatch(cli.command, ca))
}

async fn dispatch(command: Command, ca: Option<PathBuf>) -> anyhow::Result<()> {
    let target = |url: &str| loopback(url, ca.as_deref());
    match command {
        Command::Idle(a) => run_idle(target(&a.url)?, a).await,
        Command::Handshakes(a) => run_handshakes(target(&a.url)?, a).await,
        Command::Latency(a) => run_latency(target(&a.url)?, a).await,
        Command::Throughput(a) => run_throughput(target(&a.url)?, a).await,
        Command::Echo { .. } => unreachable!("served before the runtime starts"),
        Command::Certs { out } => tidegate_benches::certs::write(&out),
        Command::FreePorts { count } => free_ports(count),
        Command::Table {
            input,
            targets,
            baseline,
        } => {
            let records = table::read_records(&input)?;
            print!("{}", table::render(&records, &targets, &baseline));
            Ok(())
        }
    }
}

async fn run_idle(target: Endpoint, a: IdleArgs) -> anyhow::Result<()> {
    let mut steps = a.connections;
    steps.sort_unstable();
    let config = idle::Config {
        steps,
        pid: a.pid,
        hold: a.hold,
        concurrency: a.concurrency,
        warmup: a.warmup,
    };
    let emit = |report| println!("{}", Outcome::Idle(report).to_json_line());
    Ok(idle::run(&target, &config, emit).await?)
}

async fn run_handshakes(target: Endpoint, a: HandshakeArgs) -> anyhow::Result<()> {
    let config = handshakes::Config {
        duration: a.duration,
        concurrency: a.concurrency,
        max: a.max,
        pid: a.pid,
    };
    let report = handshakes::run(&target, &config).await?;
    println!("{}", Outcome::Handshakes(report).to_json_line());
    Ok(())
}

async fn run_latency(target: Endpoint, a: LatencyArgs) -> anyhow::Result<()> {
    let config = latency::Config {
        connections: a.connections,
        rate: a.rate,
        duration: a.duration,
        size: a.size,
    };
    let report = latency::run(&target, &config).await?;
    println!("{}", Outcome::Latency(report).to_json_line());
    Ok(())
}

async fn run_throughput(target: Endpoint, a: ThroughputArgs) -> anyhow::Result<()> {
    let config = throughput::Config {
        connections: a.connections,
        size: a.size,
        messages: a.messages,
        window: a.window,
        pid: a.pid,
    };
    let report = throughput::run(&target, &config).await?;
    println!("{}", Outcome::Throughput(report).to_json_line());
    Ok(())
}

/// Parses `url`, refusing targets off this machine; a `wss://` one trusts `ca`.
fn loopback(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Endpoint> {
    let mut target = Endpoint::parse(url)?;
    anyhow::ensure!(
        target.is_loopback(),
        "{url}: only loopback targets are allowed (wsbench loads stay on this machine)"
    );
    if target.is_secure() {
        let ca = ca.context("a wss:// target needs --ca FILE")?;
        let tls = Tls::new(ca, &target.addr().ip().to_string())?;
        target = target.with_tls(tls);
    }
    Ok(target)
}

/// Binds `count` listeners on port 0 at once (so the ports differ), prints them, releases them.
fn free_ports(count: usize) -> anyhow::Result<()> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    for l in &listeners {
        println!("{}", l.local_addr()?.port());
    }
    Ok(())
}
