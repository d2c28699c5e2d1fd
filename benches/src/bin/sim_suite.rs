//! Runs the ws-elastic-sim suite — a tuning set and a validation set of generated traces (14
//! families × B ∈ {15, 45, 120} s), and the six hand-made traces × both pipelines × seeds with
//! every policy — and writes `benches/results/sim-suite.md` plus SVG plots into
//! `benches/results/sim/`.
//!
//! `cargo run --release -p tidegate-benches --bin sim_suite` regenerates the report;
//! `-- --sets tuning --traces none --report /tmp/tuning.md` is the quick loop for tuning.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tidegate_scaler::sim::Pipeline;
use tidegate_scaler::sim::families::Family;
use tidegate_scaler::sim::suite::generated::{GenConfig, Set};
use tidegate_scaler::sim::suite::{self, SuiteConfig};

/// Flags of the suite runner.
#[derive(Debug, Parser)]
#[command(about = "Run the ws-elastic-sim suite and write the report")]
struct Args {
    /// Seeds per hand-made trace × B × pipeline
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Generated traces per family, boot delay and set
    #[arg(long, default_value_t = 20)]
    per_family: u64,
    /// Skip the frontier (Oracle-causal at lower occupancies), for a quicker tuning loop
    #[arg(long)]
    no_frontier: bool,
    /// Generated sets to run: tuning, validation, or both, comma separated
    #[arg(long, default_value = "tuning,validation")]
    sets: String,
    /// Families of generated traces, comma separated, or `all`
    #[arg(long, default_value = "all")]
    families: String,
    /// Worker threads
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Hand-made traces, comma separated, or `none`
    #[arg(long, default_value = "step,ramp,surge,diurnal,flash,storm")]
    traces: String,
    /// Boot delays in seconds, comma separated
    #[arg(long, default_value = "15,45,120")]
    boot_delays: String,
    /// The markdown report
    #[arg(long, default_value = "benches/results/sim-suite.md")]
    report: PathBuf,
    /// Directory for the SVG plots
    #[arg(long, default_value = "benches/results/sim")]
    plots: PathBuf,
    /// Every generated trace's figures and goal ratios, a CSV row each (`none`: not written)
    #[arg(long, default_value = "benches/results/sim-suite-traces.csv")]
    csv: PathBuf,
    /// tidegate's policy settings for the generated traces, as a JSON file of
    /// `TidegatePolicyConfig` fields (for tuning; the report says it was used) [default: none]
    #[arg(long)]
    tidegate_config: Option<PathBuf>,
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|t| !t.is_empty())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let boot_delays = list(&args.boot_delays)
        .map(|b| b.parse::<u64>().map(Duration::from_secs))
        .collect::<Result<Vec<_>, _>>()?;
    let sets = list(&args.sets)
        .map(|s| match s {
            "tuning" => Ok(Set::Tuning),
            "validation" => Ok(Set::Validation),
            other => Err(anyhow::anyhow!(
                "unknown set {other:?}: tuning or validation"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let families = if args.families == "all" {
        Family::ALL.to_vec()
    } else {
        list(&args.families)
            .map(|f| {
                Family::ALL
                    .into_iter()
                    .find(|x| x.name() == f)
                    .ok_or_else(|| anyhow::anyhow!("unknown family {f:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let traces = if args.traces == "none" {
        Vec::new()
    } else {
        list(&args.traces).map(str::to_string).collect()
    };
    let command = std::iter::once("cargo run --release -p tidegate-benches --bin sim_suite".into())
        .chain(std::env::args().skip(1).map(|a| format!(" {a}")))
        .collect::<String>();
    let command = if command.ends_with("sim_suite") {
        command
    } else {
        command.replacen("sim_suite ", "sim_suite -- ", 1)
    };
    let tidegate = match &args.tidegate_config {
        Some(path) => Some(serde_json::from_str(&std::fs::read_to_string(path)?)?),
        None => None,
    };
    let cfg = SuiteConfig {
        traces,
        boot_delays,
        pipelines: vec![Pipeline::Prom, Pipeline::Direct],
        seeds: args.seeds,
        generated: GenConfig {
            families,
            per_family: args.per_family,
            tidegate,
            frontier: !args.no_frontier,
            ..GenConfig::default()
        },
        sets,
        threads: args.threads,
        report: args.report,
        plots: args.plots,
        csv: (args.csv.as_os_str() != "none").then_some(args.csv),
        command,
    };
    let text = suite::run(&cfg)?;
    let summary = text
        .split("## Hand-made traces: all")
        .next()
        .unwrap_or(&text);
    println!("{summary}");
    eprintln!(
        "wrote {} and plots in {}",
        cfg.report.display(),
        cfg.plots.display()
    );
    Ok(())
}
