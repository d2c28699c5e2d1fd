//! Turns the JSON lines of a side-by-side run into one markdown table: a row per figure, a
//! column per target (direct, HAProxy, NGINX, tidegate), each cell the median over repeats
//! with its ratio to the baseline target.
//!
//! Input lines are [`Record`]s: `{"target":"haproxy","repeat":1,"result":{"mode":"idle",..}}`,
//! as `benches/peers.sh` writes them around each `wsbench` output line.

mod figures;

use figures::figures;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
};
use tidegate_tools::load::Outcome;

/// Why a results file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Input {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a record `wsbench` wrote.
    #[error("{path}:{line}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// One measured result with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `direct`, `haproxy`, `nginx` or `tidegate`.
    pub target: String,
    /// Which repeat of the interleaved run (1-based).
    pub repeat: u32,
    /// Tells apart runs of one scenario on one target, e.g. the certificate's key type of
    /// TLS handshakes (`ecdsa`, `rsa`); none for most records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// What `wsbench` printed.
    pub result: Outcome,
}

/// Reads a JSON-lines file of [`Record`]s; blank lines are skipped.
pub fn read_records(path: &Path) -> Result<Vec<Record>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Input {
        path: path.to_owned(),
        source,
    })?;
    let parse = |(i, line): (usize, &str)| {
        serde_json::from_str(line).map_err(|source| Error::Record {
            path: path.to_owned(),
            line: i + 1,
            source,
        })
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(parse)
        .collect()
}

/// The results of one target in one repeat, with the direct run of the same repeat.
struct Run<'a> {
    own: Vec<&'a Outcome>,
    direct: Vec<&'a Outcome>,
}

type Value = Box<dyn Fn(&Run<'_>) -> Option<f64>>;

/// One row of the table.
struct Figure {
    label: String,
    value: Value,
    /// The records it reads: those of this variant only.
    variant: Option<String>,
}

/// Renders the table; `targets` are the columns in order, `baseline` the one ratios refer to.
pub fn render(records: &[Record], targets: &[String], baseline: &str) -> String {
    let figures = figures(records);
    let mut out = header(targets);
    for figure in &figures {
        let medians: Vec<Cell> = targets.iter().map(|t| cell(records, t, figure)).collect();
        let base = targets
            .iter()
            .position(|t| t == baseline)
            .and_then(|i| medians[i].median);
        let cells: Vec<String> = medians
            .iter()
            .map(|c| c.show(base, has_records(records, &c.target)))
            .collect();
        let _ = writeln!(out, "| {} | {} |", figure.label, cells.join(" | "));
    }
    out
}

fn header(targets: &[String]) -> String {
    let names: Vec<&str> = targets.iter().map(|t| display_name(t)).collect();
    let rule = vec!["---:"; targets.len()].join(" | ");
    format!("| figure | {} |\n|---| {rule} |\n", names.join(" | "))
}

/// How a target is written in the table.
pub fn display_name(target: &str) -> &str {
    match target {
        "haproxy" => "HAProxy",
        "nginx" => "NGINX",
        other => other,
    }
}

fn has_records(records: &[Record], target: &str) -> bool {
    records.iter().any(|r| r.target == target)
}

/// A target's values for one figure over the repeats.
struct Cell {
    target: String,
    median: Option<f64>,
    spread: Option<f64>,
}

impl Cell {
    fn show(&self, base: Option<f64>, has_records: bool) -> String {
        let Some(m) = self.median else {
            return if has_records {
                "–".to_owned()
            } else {
                "pending".to_owned()
            };
        };
        let mut s = number(m);
        if let Some(b) = base.filter(|b| *b > 0.0 && m >= 0.0) {
            let _ = write!(s, " ({:.2}×)", m / b);
        }
        if let Some(spread) = self.spread.filter(|p| *p >= 0.5) {
            let _ = write!(s, " ±{spread:.0}%");
        }
        s
    }
}

fn cell(records: &[Record], target: &str, figure: &Figure) -> Cell {
    let repeats: BTreeSet<u32> = records
        .iter()
        .filter(|r| r.target == target)
        .map(|r| r.repeat)
        .collect();
    let mut values: Vec<f64> = repeats
        .iter()
        .filter_map(|&rep| (figure.value)(&run(records, target, rep, figure.variant.as_deref())))
        .collect();
    values.sort_by(f64::total_cmp);
    let median = median(&values);
    let spread = match (values.first(), values.last(), median) {
        (Some(lo), Some(hi), Some(m)) if values.len() > 1 && m != 0.0 => {
            Some((hi - lo) / 2.0 / m.abs() * 100.0)
        }
        _ => None,
    };
    Cell {
        target: target.to_owned(),
        median,
        spread,
    }
}

fn run<'a>(records: &'a [Record], target: &str, repeat: u32, variant: Option<&str>) -> Run<'a> {
    let pick = |t: &str| {
        records
            .iter()
            .filter(|r| r.target == t && r.repeat == repeat && r.variant.as_deref() == variant)
            .map(|r| &r.result)
            .collect()
    };
    Run {
        own: pick(target),
        direct: pick("direct"),
    }
}

/// Median of sorted values.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if !n.is_multiple_of(2) => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `61234.6` → `61,235`; small numbers keep one or two decimals.
fn number(v: f64) -> String {
    if v.abs() < 10.0 {
        return format!("{v:.2}");
    }
    if v.abs() < 1000.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if v < 0.0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

#[cfg(test)]
mod tests;
