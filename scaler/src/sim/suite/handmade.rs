//! The six hand-made traces: every policy × boot delay × pipeline × seeds, with plots, the goal
//! check on the seed means (the same ratios as the generated traces), pairwise wins and every
//! policy's metrics per cell.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::generated::{Goal, TraceResult};
use super::{SuiteConfig, mark};
use crate::Error;
use crate::sim::families::Family;
use crate::sim::metrics::RunMetrics;
use crate::sim::policies::PolicyId;
use crate::sim::run::{self, PolicySummary};
use crate::sim::setup::{Pipeline, WorldConfig};
use crate::sim::trace::Trace;
use crate::sim::{plot, report};

/// One trace × B × pipeline cell.
pub(super) struct Cell {
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

    /// The cell's seed means as one trace result, judged like a generated trace of the family
    /// the shape belongs to.
    fn as_result(&self) -> Option<TraceResult> {
        let family = match self.trace.as_str() {
            "step" => Family::Step,
            "flash" => Family::Flash,
            "storm" => Family::Storm,
            "surge" => Family::Compound,
            "diurnal" => Family::Diurnal,
            _ => Family::NoisyRamp,
        };
        Some(TraceResult {
            family,
            seed: 0,
            boot: self.boot,
            tidegate: self.mean(PolicyId::Tidegate)?.clone(),
            hpa: self.mean(PolicyId::HpaProm)?.clone(),
            feasible: self.mean(PolicyId::OracleFeasible)?.clone(),
            causal: self.mean(PolicyId::OracleCausal)?.clone(),
            frontier: Vec::new(),
        })
    }
}

/// Runs one cell (and draws its plots for the prom pipeline).
pub(super) fn run_cell(
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
        let runs = plot::timeline_runs(&results);
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

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "n/a".into(),
        Some(x) if x.is_infinite() => "∞ ❌".into(),
        Some(x) => format!("{x:.2} {}", mark(x <= 1.0)),
    }
}

/// The goal check per cell, on seed means (prom pipeline: the judged policies do not follow
/// it).
pub(super) fn render_goal(s: &mut String, cells: &[Cell]) {
    let _ = writeln!(
        s,
        "## Hand-made traces: goal check on the means over seeds\n\n\
         The same ratios as for the generated traces (≤ 1 meets a goal); `step` and `flash` are \
         instant families, so tidegate may lose up to 1.2 × Oracle-causal's there.\n"
    );
    s.push_str(
        "| trace | B | tidegate lost | HPA-prom lost | Oracle-causal lost | lost / allowed \
         | pod-s / (1.15 × LB2) | pod starts / (1.5 × OF + 3) | storm scale-downs \
         | time to cover s | settling s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for cell in cells.iter().filter(|c| c.pipeline == Pipeline::Prom) {
        let Some(r) = cell.as_result() else { continue };
        let _ = writeln!(
            s,
            "| {} | {} s | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.1} {} | {:.0} | {:.0} |",
            cell.trace,
            cell.boot.as_secs(),
            r.tidegate.lost(),
            r.hpa.lost(),
            r.causal.lost(),
            fmt_ratio(Goal::Loss.of(&r)),
            fmt_ratio(Goal::Cost.of(&r)),
            fmt_ratio(Goal::Starts.of(&r)),
            r.tidegate.storm_scale_downs,
            mark(r.tidegate.storm_scale_downs == 0.0),
            r.tidegate.time_to_cover_s,
            r.tidegate.settling_s,
        );
    }
    s.push('\n');
}

/// Pairwise wins of tidegate over every other policy.
pub(super) fn render_wins(s: &mut String, cells: &[Cell]) {
    let _ = writeln!(
        s,
        "## Hand-made traces: pairwise wins of tidegate (over all trace × B × pipeline cells)\n"
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

/// Every policy's metrics per cell.
pub(super) fn render_all(s: &mut String, cells: &[Cell]) {
    let _ = writeln!(s, "## Hand-made traces: all results\n");
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
}
