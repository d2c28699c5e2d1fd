//! The ws-elastic-sim suite: every named trace × boot delay × pipeline × seeds, all policies,
//! with the goal of `SIMULATOR.md` checked from the measured numbers (nothing is asserted by
//! hand). `benches/src/bin/sim_suite.rs` is a thin front to [`run`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cli::trace_source;
use super::metrics::RunMetrics;
use super::policies::PolicyId;
use super::run::{self, PolicySummary};
use super::setup::{Pipeline, WorldConfig};
use super::trace::Trace;
use super::{plot, report};
use crate::Error;

/// What the suite runs and where it writes.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// Trace names.
    pub traces: Vec<String>,
    /// Boot delays.
    pub boot_delays: Vec<Duration>,
    /// Pipelines.
    pub pipelines: Vec<Pipeline>,
    /// Seeds per combination.
    pub seeds: u64,
    /// Worker threads.
    pub threads: usize,
    /// The markdown report.
    pub report: PathBuf,
    /// Directory for the SVG plots.
    pub plots: PathBuf,
}

/// One trace × B × pipeline cell.
struct Cell {
    trace: String,
    boot: Duration,
    pipeline: Pipeline,
    summaries: Vec<PolicySummary>,
}

impl Cell {
    fn mean(&self, id: PolicyId) -> Option<&RunMetrics> {
        self.summaries
            .iter()
            .find(|s| s.policy == id)
            .map(|s| &s.mean)
    }
}

/// Runs the suite, writes the report and plots, and returns the report text.
pub fn run(cfg: &SuiteConfig) -> Result<String, Error> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.plots).map_err(|e| Error::io(&cfg.plots, e))?;
    let mut cells = Vec::new();
    for trace in &cfg.traces {
        let source = trace_source(trace)?;
        for &boot in &cfg.boot_delays {
            for &pipeline in &cfg.pipelines {
                cells.push(run_cell(cfg, trace, &source, boot, pipeline)?);
            }
        }
    }
    let text = render(cfg, &cells, started.elapsed());
    report::write(
        cfg.report.parent().unwrap_or(std::path::Path::new(".")),
        &cfg.report
            .file_name()
            .map_or("sim-suite.md".into(), |n| n.to_string_lossy().into_owned()),
        &text,
    )?;
    Ok(text)
}

fn run_cell(
    cfg: &SuiteConfig,
    trace: &str,
    source: &dyn Fn(u64) -> Arc<Trace>,
    boot: Duration,
    pipeline: Pipeline,
) -> Result<Cell, Error> {
    let world = WorldConfig {
        boot_delay: boot,
        pipeline,
        ..WorldConfig::default()
    };
    world.validate()?;
    let record = (pipeline == Pipeline::Prom).then_some(0);
    let specs = run::specs(source, &world, &PolicyId::ALL, 0..cfg.seeds, record);
    let results = run::run_all(&specs, cfg.threads);
    let summaries = run::summarize(&results);
    if pipeline == Pipeline::Prom {
        let stem = format!("{trace}-B{}", boot.as_secs());
        let runs: Vec<(&str, &[super::world::TimelinePoint])> = results
            .iter()
            .filter(|r| !r.output.timeline.is_empty())
            .map(|r| (r.policy.name(), r.output.timeline.as_slice()))
            .collect();
        let title = format!(
            "{trace}, B = {}s: demand vs ready pods vs replicas (seed 0)",
            boot.as_secs()
        );
        plot::timeline_svg(
            &cfg.plots.join(format!("{stem}-timeline.svg")),
            &title,
            world.capacity,
            &runs,
        )?;
        let points = plot::pareto_points(&summaries);
        let title = format!(
            "{trace}, B = {}s: cost / LB2 vs rejected + forced",
            boot.as_secs()
        );
        plot::pareto_svg(
            &cfg.plots.join(format!("{stem}-pareto.svg")),
            &title,
            &points,
        )?;
    }
    Ok(Cell {
        trace: trace.to_string(),
        boot,
        pipeline,
        summaries,
    })
}

/// The goal check for one cell, from measured means.
struct Goal {
    loss_ratio: f64,
    loss_ok: bool,
    zero_ok: Option<bool>,
    cost_ratio: f64,
    cost_ok: bool,
    storm_downs: f64,
}

fn goal(cell: &Cell) -> Option<Goal> {
    let tg = cell.mean(PolicyId::Tidegate)?;
    let hpa = cell.mean(PolicyId::HpaProm)?;
    let oracle = cell.mean(PolicyId::OracleFeasible)?;
    let loss_ratio = if hpa.lost() > 0.0 {
        tg.lost() / hpa.lost()
    } else if tg.lost() > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let cost_ratio = tg.cost_over_lb2();
    Some(Goal {
        loss_ratio,
        loss_ok: tg.lost() <= 0.1 * hpa.lost(),
        zero_ok: (oracle.lost() == 0.0).then_some(tg.lost() == 0.0),
        cost_ratio,
        cost_ok: cost_ratio <= 1.15,
        storm_downs: tg.storm_scale_downs,
    })
}

fn mark(ok: bool) -> &'static str {
    if ok { "✅" } else { "❌" }
}

fn render(cfg: &SuiteConfig, cells: &[Cell], elapsed: Duration) -> String {
    let mut s = String::new();
    let world = WorldConfig::default();
    let _ = writeln!(s, "# ws-elastic-sim suite\n");
    let _ = writeln!(
        s,
        "Generated by `cargo run --release -p tidegate-benches --bin sim_suite` in {:.0} s on {} \
         thread(s): {} traces × B ∈ {{{}}} s × pipelines {{{}}} × {} seeds × {} policies. Every number \
         below comes from running the simulator; nothing is edited by hand.\n",
        elapsed.as_secs_f64(),
        cfg.threads,
        cfg.traces.len(),
        cfg.boot_delays
            .iter()
            .map(|b| b.as_secs().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.pipelines
            .iter()
            .map(|p| format!("{p:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.seeds,
        PolicyId::ALL.len(),
    );
    let _ = writeln!(
        s,
        "World: C = {}, T = {}, boot ±{:.0} %, L ~ Exp(mean {} s), placement {:?} (Q = {:?}), \
         termination {:?} ({:?}), victims {:?}, reconnect {:?}, scrape interval {:?}, patch delay \
         U({:?}, {:?}). `--pipeline` feeds the Seed2 family only; HPA-prom (prom), HPA-direct and \
         KPA (direct) and tidegate (edge) have fixed feeds, so their rows are the same in both \
         pipelines (a determinism check).\n",
        world.capacity,
        world.target,
        world.boot_jitter * 100.0,
        world.mean_lifetime.as_secs(),
        world.placement,
        world.hold_limit,
        world.termination,
        world.grace,
        world.victims,
        world.reconnect,
        world.scrape_interval,
        world.patch_delay.0,
        world.patch_delay.1,
    );
    render_goal(&mut s, cells);
    render_misses(&mut s, cells);
    render_wins(&mut s, cells);
    let _ = writeln!(s, "## All results\n");
    for cell in cells {
        let _ = writeln!(
            s,
            "### {} · B = {} s · pipeline {:?}\n",
            cell.trace,
            cell.boot.as_secs(),
            cell.pipeline
        );
        s.push_str(&report::markdown_table(&cell.summaries));
        if cell.pipeline == Pipeline::Prom {
            let stem = format!("{}-B{}", cell.trace, cell.boot.as_secs());
            let _ = writeln!(
                s,
                "\nPlots: [timeline](sim/{stem}-timeline.svg) · [Pareto](sim/{stem}-pareto.svg)"
            );
        }
        s.push('\n');
    }
    s
}

fn render_goal(s: &mut String, cells: &[Cell]) {
    let _ = writeln!(
        s,
        "## Goal check (pipeline prom; tidegate, HPA-prom and the oracles do not depend on it)\n"
    );
    let _ = writeln!(
        s,
        "Goal: tidegate's rejected + forced ≤ 10 % of HPA-prom's; 0 where Oracle-feasible has 0; \
         pod-seconds ≤ 1.15 × LB2; no scale-down caused by a reconnect storm.\n"
    );
    s.push_str(
        "| trace | B | tidegate lost | HPA-prom lost | ratio (≤ 0.10) | Oracle-feasible lost | 0 where oracle 0 \
         | tidegate pod-s / LB2 (≤ 1.15) | storm scale-downs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for cell in cells.iter().filter(|c| c.pipeline == Pipeline::Prom) {
        let (Some(g), Some(tg), Some(hpa), Some(or)) = (
            goal(cell),
            cell.mean(PolicyId::Tidegate),
            cell.mean(PolicyId::HpaProm),
            cell.mean(PolicyId::OracleFeasible),
        ) else {
            continue;
        };
        let zero = match g.zero_ok {
            Some(ok) => mark(ok).to_string(),
            None => "n/a".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} s | {:.0} | {:.0} | {:.3} {} | {:.0} | {} | {:.2} {} | {:.1} {} |",
            cell.trace,
            cell.boot.as_secs(),
            tg.lost(),
            hpa.lost(),
            g.loss_ratio,
            mark(g.loss_ok),
            or.lost(),
            zero,
            g.cost_ratio,
            mark(g.cost_ok),
            g.storm_downs,
            mark(g.storm_downs == 0.0),
        );
    }
    s.push('\n');
}

/// Lists the cells where a goal is missed (from the data) and the mechanism behind each kind.
fn render_misses(s: &mut String, cells: &[Cell]) {
    let list = |pred: &dyn Fn(&Goal) -> Option<String>| {
        let items: Vec<String> = cells
            .iter()
            .filter(|c| c.pipeline == Pipeline::Prom)
            .filter_map(|c| {
                let v = goal(c).and_then(|g| pred(&g))?;
                Some(format!("{} B{} ({v})", c.trace, c.boot.as_secs()))
            })
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let loss = list(&|g| (!g.loss_ok).then(|| format!("{:.3}", g.loss_ratio)));
    let zero = list(&|g| (g.zero_ok == Some(false)).then(|| "lost > 0".to_string()));
    let cost = list(&|g| (!g.cost_ok).then(|| format!("{:.2}", g.cost_ratio)));
    let storm = list(&|g| (g.storm_downs > 0.0).then(|| format!("{:.1}", g.storm_downs)));
    let _ = writeln!(s, "## Where tidegate misses the goal, and why\n");
    let _ = writeln!(
        s,
        "- **Lost connections > 10 % of HPA-prom's:** {loss}. {WHY_LOSS}"
    );
    let _ = writeln!(s, "- **Not 0 where Oracle-feasible has 0:** {zero}.");
    let _ = writeln!(s, "- **Pod-seconds > 1.15 × LB2:** {cost}. {WHY_COST}");
    let _ = writeln!(
        s,
        "- **Scale-downs caused by a reconnect storm:** {storm}.\n"
    );
}

/// The mechanism behind missing the loss goal (the cells come from the data).
const WHY_LOSS: &str = "Demand that arrives faster than a pod boots (an instant +8,000 in \
    `step`, +25,000 within 30 s in `flash`) cannot be placed by any policy that does not know it \
    in advance: until the first new pod is Ready (B ± 20 %) every held client times out and every \
    retry is refused again. tidegate orders within a second of the first refusal and sizes on what \
    the edge sees, so it loses less than HPA-prom (which waits for a scrape, a sync, then doubles \
    per 15 s), but most of HPA-prom's losses fall in the same unavoidable boot window. Reaching \
    10 % would take standing headroom of several times the load, which the cost goal forbids.";

/// The mechanism behind missing the cost goal.
const WHY_COST: &str = "LB2 packs pods to exactly ceil(D/C) (and refuses connections at the \
    noise peaks for it), while tidegate keeps 0.92 occupancy: at 2,000 connections that is 3 pods \
    against 2. In `surge`, a forecast cannot know when compounded growth stops, so the pods ordered \
    during the last horizon before the plateau are surplus; they stand by empty (no disconnects) \
    and are removed after the 2-minute peak window, but are billed while booting and waiting. \
    `flash` has both effects.";

fn render_wins(s: &mut String, cells: &[Cell]) {
    let _ = writeln!(
        s,
        "## Pairwise wins of tidegate (over all trace × B × pipeline cells)\n"
    );
    s.push_str("| against | fewer lost | fewer pod-seconds | both |\n|---|---:|---:|---:|\n");
    for other in PolicyId::ALL.iter().filter(|p| **p != PolicyId::Tidegate) {
        let (mut lost, mut cost, mut both, mut n) = (0, 0, 0, 0);
        for cell in cells {
            let (Some(tg), Some(o)) = (cell.mean(PolicyId::Tidegate), cell.mean(*other)) else {
                continue;
            };
            n += 1;
            let l = tg.lost() < o.lost();
            let c = tg.pod_seconds < o.pod_seconds;
            lost += usize::from(l);
            cost += usize::from(c);
            both += usize::from(l && c);
        }
        let _ = writeln!(
            s,
            "| {} | {lost}/{n} | {cost}/{n} | {both}/{n} |",
            other.name()
        );
    }
    s.push('\n');
}
