//! The report's SVG plots (plotters' SVG backend): stacked panels of lines over time, e.g. the
//! proxy's live count against the sockets at the backends, and the proxy's RSS.

use std::path::Path;

use plotters::prelude::*;

use super::Error;

/// Most points drawn per line (longer lines are thinned evenly).
const MAX_POINTS: usize = 600;

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend label.
    pub label: String,
    /// `(t seconds, value)` points in time order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed-looking (thin) when true, e.g. a cap.
    pub thin: bool,
}

impl Line {
    /// A line labelled `label`.
    pub fn new(label: &str, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.to_owned(),
            points,
            thin: false,
        }
    }
}

/// One panel: lines sharing a y axis.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Caption above the panel.
    pub caption: String,
    /// The y axis' description.
    pub y_desc: String,
    /// The lines.
    pub lines: Vec<Line>,
}

/// Distinct colours for up to eight lines per panel.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `panels` stacked vertically into one SVG at `path`.
pub fn panels_svg(path: &Path, title: &str, panels: &[Panel]) -> Result<(), Error> {
    let height = 240 * panels.len().max(1) as u32 + 40;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| plot_err(path, e))?;
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        draw_panel(path, area, panel)?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

fn draw_panel(
    path: &Path,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), Error> {
    let all = || panel.lines.iter().flat_map(|l| l.points.iter());
    let t_max = all().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let y_min = all().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, y_min..y_max)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("t (s)")
        .y_desc(panel.y_desc.as_str())
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, line) in panel.lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let width = if line.thin { 1 } else { 2 };
        let style = color.stroke_width(width);
        let every = (line.points.len() / MAX_POINTS).max(1);
        chart
            .draw_series(LineSeries::new(
                line.points.iter().step_by(every).copied(),
                style,
            ))
            .map_err(|e| plot_err(path, e))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| plot_err(path, e))
}
