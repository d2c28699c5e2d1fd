//! `soak`: tidegate's fault and soak suite (`cargo xtask soak` builds and runs it). Runs the
//! real `tidegate` binary against real clients and backends on 127.0.0.1, scenario by
//! scenario, and writes `benches/results/soak.md` with its plots. Exits non-zero if any rule
//! fails. Ctrl-C (or SIGTERM) stops every child process and removes every namespace it made.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tidegate_benches::soak::{Context, Plan, plan::Name, proxy::Features, suite};

/// The fault and soak suite: the proxy's promises under load, faults and bad input.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Length of the timed scenarios (hold, kills, edges) in minutes [default: 10; 1 with --ci].
    #[arg(long)]
    minutes: Option<f64>,
    /// Run only these scenarios, comma-separated: hold, kills, blackhole, reloads, slowloris,
    /// descriptors, outage, edges.
    #[arg(long, value_delimiter = ',', value_parser = Name::parse)]
    only: Vec<Name>,
    /// The short form CI runs: every scenario with smaller counts and 1-minute holds.
    #[arg(long)]
    ci: bool,
    /// The tidegate binary [default: `tidegate` beside this one].
    #[arg(long)]
    tidegate: Option<PathBuf>,
    /// Where soak.md and its plots go [default: benches/results for a full run of every
    /// scenario, benches/results/tmp otherwise].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory of build-kube-apiserver.sh and start-kube-apiserver.sh [default:
    /// $K8S_SCRIPTS, else ../shared/k8s beside the repository or beside its worktrees'
    /// directory, if present].
    #[arg(long)]
    k8s_scripts: Option<PathBuf>,
    /// A part of the suite run as a process of its own (started by the suite itself).
    #[command(subcommand)]
    part: Option<Part>,
}

/// The suite's parts that run as processes of their own, so that their load does not share the
/// measuring clients' runtime.
#[derive(Debug, clap::Subcommand)]
enum Part {
    /// Slowloris clients against `--target`: prints their report as JSON on stdout.
    #[command(hide = true)]
    SlowClients {
        /// The proxy's traffic address.
        #[arg(long)]
        target: std::net::SocketAddr,
        /// Slow connections.
        #[arg(long)]
        connections: usize,
        /// Milliseconds between two bytes of a head.
        #[arg(long)]
        every_ms: u64,
        /// Connects in flight at once.
        #[arg(long)]
        concurrency: usize,
        /// Milliseconds after which an unanswered connection is counted as held.
        #[arg(long)]
        give_up_ms: u64,
    },
}

/// Runs a [`Part`]: the slow clients, on a runtime of one thread.
fn part(part: Part) -> anyhow::Result<bool> {
    let Part::SlowClients {
        target,
        connections,
        every_ms,
        concurrency,
        give_up_ms,
    } = part;
    let config = tidegate_tools::load::slow::Config {
        connections,
        every: std::time::Duration::from_millis(every_ms),
        concurrency,
        give_up: std::time::Duration::from_millis(give_up_ms),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = runtime.block_on(tidegate_tools::load::slow::run(target, &config))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(true)
}

/// The repository root, as built.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("soak: some rules failed (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = Cli::parse();
    raise_descriptor_limit()?;
    if let Some(p) = cli.part {
        return part(p);
    }
    let plan = Plan::new(cli.ci, cli.minutes, cli.only);
    let tidegate = match cli.tidegate {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this binary")?
            .join("tidegate"),
    };
    anyhow::ensure!(
        tidegate.is_file(),
        "no tidegate binary at {} (cargo build --release -p tidegate-proxy, or --tidegate)",
        tidegate.display()
    );
    let complete = !plan.ci && plan.only.len() == Name::ALL.len();
    let out = cli.out.unwrap_or_else(|| {
        let results = repo().join("benches/results");
        if complete {
            results
        } else {
            results.join("tmp")
        }
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let work = tempfile::Builder::new()
        .prefix("tidegate-soak.")
        .tempdir()
        .context("creating the work directory")?;
    let k8s_scripts = cli
        .k8s_scripts
        .or_else(|| std::env::var_os("K8S_SCRIPTS").map(PathBuf::from))
        .into_iter()
        // `../shared/k8s` beside the repository, or beside the directory of its worktrees.
        .chain(["../shared/k8s", "../../shared/k8s"].map(|d| repo().join(d)))
        .find(|d| d.join("start-kube-apiserver.sh").is_file());
    let ctx = Context {
        features: Features::detect(&tidegate, work.path()),
        tidegate,
        work: work.path().to_path_buf(),
        out,
        plan,
        k8s_scripts,
    };
    eprintln!(
        "[soak] {:?}; work directory {}",
        ctx.features,
        ctx.work.display()
    );
    let command = format!("cargo xtask soak {}", args.join(" "));
    let version = version(&ctx.tidegate);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            run = suite::run(&ctx, command.trim().to_owned(), version) => Some(run),
            () = tidegate_tools::signals::terminated() => None,
        }
    });
    // Dropping the suite's future above stopped every child and removed every namespace.
    drop(runtime);
    let Some(run) = outcome else {
        anyhow::bail!(
            "interrupted; work directory kept: {}",
            work.keep().display()
        );
    };
    let run = run?;
    if !run.passed() {
        eprintln!("[soak] logs and configs kept in {}", work.keep().display());
    }
    Ok(run.passed())
}

/// The proxy needs 2 descriptors per WebSocket: take the hard limit as the soft one, for this
/// process and the children it starts.
fn raise_descriptor_limit() -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading RLIMIT_NOFILE")?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
    if hard < 20_000 {
        eprintln!("[soak] warning: the open-file hard limit is {hard}; the hold needs 20,000");
    }
    Ok(())
}

/// `tidegate --version` and the commit the repository is at.
fn version(tidegate: &Path) -> String {
    let out = |cmd: &mut std::process::Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let binary = out(std::process::Command::new(tidegate).arg("--version"))
        .unwrap_or_else(|| "unknown".into());
    let commit = out(std::process::Command::new("git")
        .args(["-C"])
        .arg(repo())
        .args(["describe", "--always", "--dirty"]))
    .unwrap_or_else(|| "unknown commit".into());
    format!("{binary}, commit {commit}")
}
