//! The report: a markdown table with the policies side by side, `summary.json` and
//! `decisions.csv`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::metrics::{RunMetrics, ci95};
use super::run::{PolicySummary, RunResult};
use crate::Error;

/// One line of `summary.json` (means over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct SummaryLine<'a> {
    /// Policy id.
    pub policy: &'a str,
    /// Rejected attempts.
    pub rejected: f64,
    /// All attempts.
    pub attempts: f64,
    /// Connections killed by scale-down.
    pub forced_disconnects: f64,
    /// Billed pod-seconds.
    pub pod_seconds: f64,
    /// LB1 (Oracle-fluid).
    pub lb1_pod_seconds: f64,
    /// LB2 (Oracle-feasible).
    pub lb2_pod_seconds: f64,
    /// Pods created.
    pub pod_starts: f64,
    /// `spec.replicas` changes.
    pub replica_changes: f64,
    /// θU (%).
    pub theta_u: f64,
    /// θO (%).
    pub theta_o: f64,
    /// τU (%).
    pub tau_u: f64,
    /// τO (%).
    pub tau_o: f64,
}

impl<'a> SummaryLine<'a> {
    /// The line for a policy's mean.
    pub fn new(policy: &'a str, m: &RunMetrics) -> Self {
        SummaryLine {
            policy,
            rejected: m.rejected,
            attempts: m.attempts,
            forced_disconnects: m.forced_disconnects,
            pod_seconds: m.pod_seconds,
            lb1_pod_seconds: m.lb1_pod_seconds,
            lb2_pod_seconds: m.lb2_pod_seconds,
            pod_starts: m.pod_starts,
            replica_changes: m.replica_changes,
            theta_u: m.theta_u,
            theta_o: m.theta_o,
            tau_u: m.tau_u,
            tau_o: m.tau_o,
        }
    }
}

fn mean_ci(runs: &[RunMetrics], f: impl Fn(&RunMetrics) -> f64) -> (f64, f64) {
    let xs: Vec<f64> = runs.iter().map(f).collect();
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    (mean, ci95(&xs))
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".into()
    }
}

fn cover_settle(m: &RunMetrics) -> String {
    let f = |x: f64| {
        if x.is_finite() {
            format!("{x:.0}")
        } else {
            "–".into()
        }
    };
    format!("{} / {}", f(m.time_to_cover_s), f(m.settling_s))
}

/// The markdown table: one row per policy, the simulator's metrics as columns.
pub fn markdown_table(summaries: &[PolicySummary]) -> String {
    let mut s = String::new();
    s.push_str(
        "| policy | rejected (% of attempts) | forced disc. (/1k conn-h) | rejected + forced (±95% CI) \
         | pod-s | /LB1 | /LB2 | pod starts | cancelled boots | replica changes | API writes | θU % | θO % \
         | τU % | τO % | wait p50/p99 ms | reconnect ampl. | storm scale-downs | forecast MAE / MASE \
         | time to cover / settling s |\n",
    );
    s.push_str(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in summaries {
        let m = &p.mean;
        let (lost, lost_ci) = mean_ci(&p.runs, RunMetrics::lost);
        let lb1 = if m.lb1_pod_seconds > 0.0 {
            m.pod_seconds / m.lb1_pod_seconds
        } else {
            f64::NAN
        };
        let fc = if m.forecast_mae.is_finite() {
            format!("{:.0} / {}", m.forecast_mae, ratio(m.forecast_mase))
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} ({:.2}%) | {:.0} ({:.1}) | {:.0} ± {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} \
             | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}/{:.0} | {:.2} | {:.1} | {} | {} |",
            p.policy.name(),
            m.rejected,
            m.rejected_pct(),
            m.forced_disconnects,
            m.forced_per_k_hours(),
            lost,
            lost_ci,
            m.pod_seconds,
            ratio(lb1),
            ratio(m.cost_over_lb2()),
            m.pod_starts,
            m.cancelled_boots,
            m.replica_changes,
            m.api_writes,
            m.theta_u,
            m.theta_o,
            m.tau_u,
            m.tau_o,
            m.wait_p50_ms,
            m.wait_p99_ms,
            m.amplification(),
            m.storm_scale_downs,
            fc,
            cover_settle(m),
        );
    }
    s
}

/// `summary.json`: one object per policy (means over seeds).
pub fn summary_json(summaries: &[PolicySummary]) -> Result<String, Error> {
    let lines: Vec<SummaryLine<'_>> = summaries
        .iter()
        .map(|p| SummaryLine::new(p.policy.name(), &p.mean))
        .collect();
    Ok(serde_json::to_string_pretty(&lines)?)
}

/// `decisions.csv`: one row per policy decision tick of the recorded runs.
pub fn decisions_csv(results: &[RunResult]) -> String {
    let mut s = String::from(
        "policy,seed,t_seconds,desired_replicas,ready_replicas,connections,rejected_total,\
         demand,serving_replicas,forecast,forecast_horizon_s,action,basis,load,note\n",
    );
    let opt = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.0}"));
    for r in results {
        for d in &r.output.decisions {
            let _ = writeln!(
                s,
                "{},{},{:.1},{},{},{},{},{:.0},{},{},{},{},{},{:.0},{}",
                r.policy.name(),
                r.seed,
                d.t,
                d.desired,
                d.ready,
                d.connections,
                d.rejected_total,
                d.demand,
                opt(d.serving.map(f64::from)),
                opt(d.forecast.map(|f| f.connections)),
                opt(d.forecast.map(|f| f.horizon.as_secs_f64())),
                d.reason.action,
                d.reason.basis,
                d.reason.load,
                d.reason.note,
            );
        }
    }
    s
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| Error::io(path, e))
}
