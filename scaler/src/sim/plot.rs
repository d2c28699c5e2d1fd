//! SVG plots (plotters' SVG backend, no external services): demand vs ready capacity vs replicas
//! over time per policy, and the Pareto plot of cost against lost connections.

use std::path::Path;

use plotters::prelude::*;

use super::world::TimelinePoint;
use crate::Error;

/// A plotted line: label, colour, and the value it draws from a point (given the capacity).
type Series = (&'static str, RGBColor, fn(&TimelinePoint, f64) -> f64);

/// Most points drawn per line.
const MAX_POINTS: usize = 300;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn thin(points: &[TimelinePoint]) -> impl Iterator<Item = &TimelinePoint> + '_ {
    let every = (points.len() / MAX_POINTS).max(1);
    points.iter().step_by(every)
}

/// One panel per policy: demand in pods (D/C), ready pods and `spec.replicas` over time.
pub fn timeline_svg(
    path: &Path,
    title: &str,
    capacity: u32,
    runs: &[(&str, &[TimelinePoint])],
) -> Result<(), Error> {
    let cols = 2;
    let rows = runs.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (1200, 260 * rows as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| plot_err(path, e))?;
    let c = f64::from(capacity);
    for (area, (name, pts)) in root.split_evenly((rows, cols)).iter().zip(runs) {
        let t_max = pts.last().map_or(1.0, |p| p.t).max(1.0);
        let y_max = pts
            .iter()
            .map(|p| {
                (p.demand / c)
                    .max(f64::from(p.replicas))
                    .max(f64::from(p.ready))
            })
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("t (s)")
            .y_desc("pods")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let series: [Series; 3] = [
            ("demand D/C", BLACK, |p, c| p.demand / c),
            ("ready pods", BLUE, |p, _| f64::from(p.ready)),
            ("spec.replicas", RED, |p, _| f64::from(p.replicas)),
        ];
        for (label, color, f) in series {
            chart
                .draw_series(LineSeries::new(thin(pts).map(|p| (p.t, f(p, c))), color))
                .map_err(|e| plot_err(path, e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

/// The timeline plot's runs: per policy with a recorded timeline, (name, points).
pub fn timeline_runs(results: &[super::run::RunResult]) -> Vec<(&str, &[TimelinePoint])> {
    results
        .iter()
        .filter(|r| !r.output.timeline.is_empty())
        .map(|r| (r.policy.name(), r.output.timeline.as_slice()))
        .collect()
}

/// The Pareto plot's points: per policy, (name, cost / LB2, lost connections).
pub fn pareto_points(summaries: &[super::run::PolicySummary]) -> Vec<(String, f64, f64)> {
    summaries
        .iter()
        .map(|p| {
            (
                p.policy.name().to_string(),
                p.mean.cost_over_lb2(),
                p.mean.lost(),
            )
        })
        .collect()
}

/// Pareto plot: x = pod-seconds / LB2, y = rejected + forced disconnects (log scale).
pub fn pareto_svg(path: &Path, title: &str, points: &[(String, f64, f64)]) -> Result<(), Error> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let finite = points.iter().filter(|p| p.1.is_finite());
    let x_max = finite.clone().map(|p| p.1).fold(1.5, f64::max) * 1.1;
    let y_max = finite.map(|p| p.2).fold(10.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (1.0..y_max).log_scale())
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("pod-seconds / LB2")
        .y_desc("rejected + forced disconnects (+1)")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, (name, x, y)) in points.iter().enumerate() {
        if !x.is_finite() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let at = (*x, y + 1.0);
        chart
            .draw_series([Circle::new(at, 5, color.filled())])
            .map_err(|e| plot_err(path, e))?;
        chart
            .draw_series([Text::new(
                name.clone(),
                (at.0, at.1 * 1.15),
                ("sans-serif", 13),
            )])
            .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}
