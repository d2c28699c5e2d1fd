//! Runs the ws-elastic-sim suite (6 traces × B ∈ {15, 45, 120} s × both pipelines × seeds, every
//! policy) and writes `benches/results/sim-suite.md` plus SVG plots into `benches/results/sim/`.
//!
//! `cargo run --release -p tidegate-benches --bin sim_suite -- --seeds 10 --threads 2`

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tidegate_scaler::sim::Pipeline;
use tidegate_scaler::sim::suite::{self, SuiteConfig};

/// Flags of the suite runner.
#[derive(Debug, Parser)]
#[command(about = "Run the ws-elastic-sim suite and write the report")]
struct Args {
    /// Seeds per trace × B × pipeline [default: 10]
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Worker threads [default: 2]
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Traces, comma separated [default: step,ramp,surge,diurnal,flash,storm]
    #[arg(long, default_value = "step,ramp,surge,diurnal,flash,storm")]
    traces: String,
    /// Boot delays in seconds, comma separated [default: 15,45,120]
    #[arg(long, default_value = "15,45,120")]
    boot_delays: String,
    /// The markdown report [default: benches/results/sim-suite.md]
    #[arg(long, default_value = "benches/results/sim-suite.md")]
    report: PathBuf,
    /// Directory for the SVG plots [default: benches/results/sim]
    #[arg(long, default_value = "benches/results/sim")]
    plots: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let boot_delays = args
        .boot_delays
        .split(',')
        .map(|b| b.trim().parse::<u64>().map(Duration::from_secs))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = SuiteConfig {
        traces: args
            .traces
            .split(',')
            .map(|t| t.trim().to_string())
            .collect(),
        boot_delays,
        pipelines: vec![Pipeline::Prom, Pipeline::Direct],
        seeds: args.seeds,
        threads: args.threads,
        report: args.report,
        plots: args.plots,
    };
    let text = suite::run(&cfg)?;
    let goal = text.split("## Pairwise").next().unwrap_or(&text);
    println!("{goal}");
    eprintln!(
        "wrote {} and plots in {}",
        cfg.report.display(),
        cfg.plots.display()
    );
    Ok(())
}
