//! `tidegate simulate`: run policies side by side on one trace and write the report.
//!
//! The binary wires it with one line: a `Simulate(tidegate_scaler::sim::cli::SimulateArgs)`
//! subcommand whose handler prints `tidegate_scaler::sim::cli::run(&args)?`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::plot;
use super::policies::PolicyId;
use super::report;
use super::run::{self, PolicySummary, RunResult};
use super::setup::{Pipeline, Placement, Reconnect, Termination, Victims, WorldConfig};
use super::trace::{self, Trace};
use crate::Error;

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (expected e.g. \"45s\")"))
}

/// Flags of `tidegate simulate`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Demand trace: step, ramp, surge, diurnal, flash, storm, a generated trace
    /// `gen:<family>:<seed>` (the suite's families, e.g. `gen:flat:2007`), or a CSV file
    /// (`t_seconds,connections`, header optional)
    #[arg(long, default_value = "step")]
    pub trace: String,
    /// Nominal pod boot delay B (±20% uniform), between 1s and 10m
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub boot_delay: Duration,
    /// Input pipeline of the Seed2 policies (HPA-prom, HPA-direct, KPA and tidegate have fixed
    /// feeds)
    #[arg(long, value_enum, default_value_t = Pipeline::Prom)]
    pub pipeline: Pipeline,
    /// Prometheus scrape interval S for prom-fed policies
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
    /// Policies: `all` or a comma-separated list of tidegate, HPA-prom, HPA-direct, KPA, Seed2-a,
    /// Seed2-a-nr, Seed2-b, Seed2-b-nr, Seed2-lin, Oracle-feasible, Oracle-causal, Oracle-fluid
    #[arg(long, default_value = "all")]
    pub policies: String,
    /// Number of seeds (`--first-seed`, …, `--first-seed` + N − 1)
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// First world seed; the suite runs a generated trace `gen:<family>:<seed>` with world seed
    /// `<seed>`, so `--first-seed <seed> --seeds 1` repeats the suite's run of it
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// tidegate's policy settings, as a JSON file of `scaler.policy` fields (the rest keep
    /// their defaults; capacity, boot time and replica bounds come from the world)
    #[arg(long)]
    pub tidegate_config: Option<PathBuf>,
    /// Output directory for summary.json, decisions.csv and SVG plots
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// What the edge does when no pod has room: hold (up to 5 s) or reject
    #[arg(long, value_enum, default_value_t = Placement::Hold)]
    pub placement: Placement,
    /// How deleted pods end: hard, grace (30 s), drain
    #[arg(long, value_enum, default_value_t = Termination::Grace)]
    pub termination: Termination,
    /// Victim selection on scale-down: policy, replicaset, deletion-cost
    #[arg(long, value_enum, default_value_t = Victims::Policy)]
    pub victims: Victims,
    /// Reconnect behaviour: jitter (full jitter backoff) or herd (all retry after 1 s)
    #[arg(long, value_enum, default_value_t = Reconnect::Jitter)]
    pub reconnect: Reconnect,
    /// Replace the `maxUnavailable` of the trace's rolling updates (the `rolling` family), as a
    /// fraction of replicas from 0 to 1, e.g. 0 for a rollout that removes an old pod only once
    /// a new one is Ready
    #[arg(long)]
    pub rollout_max_unavailable: Option<f64>,
    /// Replace the `maxSurge` of the trace's rolling updates, as a fraction of replicas from 0
    /// to 1
    #[arg(long)]
    pub rollout_max_surge: Option<f64>,
    /// Worker threads
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        SimulateArgs {
            trace: "step".into(),
            boot_delay: Duration::from_secs(45),
            pipeline: Pipeline::Prom,
            scrape_interval: Duration::from_secs(30),
            policies: "all".into(),
            seeds: 10,
            first_seed: 0,
            tidegate_config: None,
            out: PathBuf::from("sim-out"),
            placement: Placement::Hold,
            termination: Termination::Grace,
            victims: Victims::Policy,
            reconnect: Reconnect::Jitter,
            rollout_max_unavailable: None,
            rollout_max_surge: None,
            threads: 2,
        }
    }
}

impl SimulateArgs {
    /// The world these flags describe (reading `--tidegate-config`).
    pub fn world(&self) -> Result<WorldConfig, Error> {
        let tidegate = match &self.tidegate_config {
            Some(path) => Some(read_policy(path)?),
            None => None,
        };
        Ok(WorldConfig {
            tidegate,
            boot_delay: self.boot_delay,
            pipeline: self.pipeline,
            scrape_interval: self.scrape_interval,
            placement: self.placement,
            termination: self.termination,
            victims: self.victims,
            reconnect: self.reconnect,
            ..WorldConfig::default()
        })
    }
}

/// A JSON file of tidegate policy fields, validated.
fn read_policy(path: &std::path::Path) -> Result<crate::config::TidegatePolicyConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let cfg: crate::config::TidegatePolicyConfig =
        serde_json::from_str(&text).map_err(|e| Error::InvalidConfig {
            field: "--tidegate-config",
            reason: format!("{}: {e}", path.display()),
        })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Traces per seed (`diurnal` is seeded; the others are loaded once and shared).
pub fn trace_source(spec: &str) -> Result<impl Fn(u64) -> Arc<Trace>, Error> {
    let base = Arc::new(trace::load(spec, 0)?);
    let seeded = spec == "diurnal";
    let spec = spec.to_string();
    Ok(move |seed| {
        if seeded {
            trace::load(&spec, seed)
                .map(Arc::new)
                .unwrap_or_else(|_| Arc::clone(&base))
        } else {
            Arc::clone(&base)
        }
    })
}

/// Runs the simulation the flags describe, writes `summary.json`, `decisions.csv` and the SVG
/// plots into `--out`, and returns the markdown table.
pub fn run(args: &SimulateArgs) -> Result<String, Error> {
    let world = args.world()?;
    world.validate()?;
    if args.seeds == 0 {
        return Err(Error::InvalidConfig {
            field: "--seeds",
            reason: "need at least 1".into(),
        });
    }
    for (field, value) in [
        ("--rollout-max-unavailable", args.rollout_max_unavailable),
        ("--rollout-max-surge", args.rollout_max_surge),
    ] {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(Error::InvalidConfig {
                field,
                reason: format!(
                    "{} is not a fraction from 0 to 1",
                    value.unwrap_or_default()
                ),
            });
        }
    }
    let policies = PolicyId::parse_list(&args.policies)?;
    let base = trace_source(&args.trace)?;
    let rollout = (args.rollout_max_surge, args.rollout_max_unavailable);
    let source = move |seed| match rollout {
        (None, None) => base(seed),
        (surge, unavailable) => Arc::new((*base(seed)).clone().with_rollout(surge, unavailable)),
    };
    let seeds = args.first_seed..args.first_seed.saturating_add(args.seeds);
    let specs = run::specs(&source, &world, &policies, seeds, Some(args.first_seed));
    let results = run::run_all(&specs, args.threads);
    let summaries = run::summarize(&results);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    write_outputs(&args.out, &args.trace, &world, &summaries, &results)?;
    let title = format!(
        "trace {} · B = {:?} · pipeline {:?} · {} seed(s)\n\n",
        args.trace, args.boot_delay, args.pipeline, args.seeds
    );
    Ok(title + &report::markdown_table(&summaries))
}

/// Writes the report files of one trace and world into `dir`.
pub fn write_outputs(
    dir: &std::path::Path,
    trace: &str,
    world: &WorldConfig,
    summaries: &[PolicySummary],
    results: &[RunResult],
) -> Result<(), Error> {
    report::write(dir, "summary.json", &report::summary_json(summaries)?)?;
    report::write(dir, "decisions.csv", &report::decisions_csv(results))?;
    let runs = plot::timeline_runs(results);
    let recorded = results
        .iter()
        .find(|r| !r.output.timeline.is_empty())
        .map_or(0, |r| r.seed);
    let title = format!(
        "{trace}, B = {:?}: demand vs ready pods vs replicas (seed {recorded})",
        world.boot_delay
    );
    plot::timeline_svg(&dir.join("timeline.svg"), &title, world.capacity, &runs)?;
    let points = plot::pareto_points(summaries);
    let title = format!(
        "{trace}, B = {:?}: cost vs lost connections",
        world.boot_delay
    );
    plot::pareto_svg(&dir.join("pareto.svg"), &title, &points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_clear_errors() {
        let args = SimulateArgs {
            trace: "tsunami".into(),
            ..Default::default()
        };
        assert!(
            run(&args)
                .unwrap_err()
                .to_string()
                .contains("unknown trace \"tsunami\"")
        );
        let args = SimulateArgs {
            boot_delay: Duration::from_secs(7200),
            ..Default::default()
        };
        assert!(run(&args).unwrap_err().to_string().contains("--boot-delay"));
        let args = SimulateArgs {
            policies: "tidegate,nope".into(),
            ..Default::default()
        };
        assert!(run(&args).unwrap_err().to_string().contains("\"nope\""));
        let args = SimulateArgs {
            rollout_max_unavailable: Some(1.5),
            ..Default::default()
        };
        let e = run(&args).unwrap_err().to_string();
        assert!(
            e.contains("--rollout-max-unavailable") && e.contains("1.5"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        for (text, names) in [
            ("{\"target_occupancy\": 0.9, \"nope\": 1}", "nope"),
            ("{\"target_occupancy\": 1.5}", "target_occupancy"),
        ] {
            std::fs::write(&policy, text).unwrap();
            let args = SimulateArgs {
                tidegate_config: Some(policy.clone()),
                ..Default::default()
            };
            let e = run(&args).unwrap_err().to_string();
            assert!(e.contains(names), "{e}");
        }
    }

    #[test]
    fn a_policy_file_and_a_first_seed_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        // A scale-up sizes for 0.5 occupancy: far more pods than the default 0.94.
        std::fs::write(
            &policy,
            r#"{"target_occupancy": 0.5, "scale_up_occupancy": 0.55,
                "scale_down_occupancy": 0.45, "scale_down_target": 0.45}"#,
        )
        .unwrap();
        let args = |config: Option<PathBuf>, out: &str| SimulateArgs {
            trace: "gen:step:3".into(),
            boot_delay: Duration::from_secs(15),
            policies: "tidegate".into(),
            seeds: 1,
            first_seed: 3,
            tidegate_config: config,
            out: dir.path().join(out),
            ..Default::default()
        };
        run(&args(None, "default")).unwrap();
        run(&args(Some(policy), "half")).unwrap();
        let most = |out: &str| {
            let csv = std::fs::read_to_string(dir.path().join(out).join("decisions.csv")).unwrap();
            assert!(csv.lines().nth(1).unwrap().starts_with("tidegate,3,"));
            csv.lines()
                .skip(1)
                .filter_map(|l| l.split(',').nth(3)?.parse::<u32>().ok())
                .max()
                .unwrap()
        };
        assert!(
            most("half") > most("default"),
            "{} vs {}",
            most("half"),
            most("default")
        );
    }

    #[test]
    fn writes_the_report_files() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "t_seconds,connections\n0,2000\n120,6000\n400,2000\n").unwrap();
        let args = SimulateArgs {
            trace: csv.display().to_string(),
            boot_delay: Duration::from_secs(15),
            policies: "tidegate,HPA-prom,Oracle-feasible,Oracle-fluid".into(),
            seeds: 2,
            out: dir.path().join("out"),
            ..Default::default()
        };
        let table = run(&args).unwrap();
        assert!(
            table.contains("| tidegate |") && table.contains("| HPA-prom |"),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json.as_array().unwrap().len(), 4);
        assert!(json[0].get("lb2_pod_seconds").is_some());
        let csv = std::fs::read_to_string(dir.path().join("out/decisions.csv")).unwrap();
        assert!(csv.starts_with("policy,seed,t_seconds,desired_replicas"));
        assert!(csv.lines().count() > 10);
        for svg in ["timeline.svg", "pareto.svg"] {
            let text = std::fs::read_to_string(dir.path().join("out").join(svg)).unwrap();
            assert!(text.contains("<svg"), "{svg}");
        }
    }
}
