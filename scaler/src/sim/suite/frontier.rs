//! The frontier: could any policy without foresight meet the loss goal and the cost goal at
//! once on a family? Oracle-causal knows the demand of the moment exactly and acts at once; at
//! occupancy o it holds back 1/o − 1 of headroom all the time, which is all a causal policy can
//! do about demand that rises faster than a pod boots (a step, a spike, pods killed). Where no
//! o meets both goals at p90 on such a family, the two goals conflict for every causal policy,
//! and tidegate's miss of one of them is the price of meeting the other. On slower families a
//! forecast can do better than headroom, and there the frontier only bounds headroom alone.

use std::fmt::Write as _;

use super::generated::{FRONTIER, TraceResult, spread};
use super::verdict::num;
use crate::sim::families::Family;
use crate::sim::metrics::RunMetrics;

/// p90 of the loss goal and of the cost goal ([`TraceResult::loss_and_cost`]) of one policy
/// over some traces, and whether both are met.
fn p90s(rows: &[&TraceResult], run: impl Fn(&TraceResult) -> &RunMetrics) -> (f64, f64, bool) {
    let (mut loss, mut cost): (Vec<f64>, Vec<f64>) =
        rows.iter().map(|r| r.loss_and_cost(run(r))).unzip();
    let (loss, cost) = (spread(&mut loss).1, spread(&mut cost).1);
    (loss, cost, loss <= 1.0 && cost <= 1.0)
}

fn cell((loss, cost, met): (f64, f64, bool)) -> String {
    format!(
        "{} / {}{}",
        num(loss),
        num(cost),
        if met { " ✅" } else { "" }
    )
}

/// Renders the frontier of one set (nothing if the frontier was not run).
pub(super) fn render(
    s: &mut String,
    families: &[Family],
    boots: &[std::time::Duration],
    results: &[TraceResult],
) {
    if results.iter().all(|r| r.frontier.len() < FRONTIER.len()) {
        return;
    }
    let _ = writeln!(
        s,
        "### Frontier: the loss goal against the cost goal\n\n\
         Each cell is the p90 of lost / allowed and of pod-s / (1.15 × LB2) on this set (✅ when \
         both are ≤ 1), for tidegate and for Oracle-causal — the demand of the moment known \
         exactly and acted on at once — sized for occupancy o, that is with a standing headroom \
         of 1/o − 1 (o = 0.7 is HPA-prom's target). The last column lists the occupancies at \
         which that oracle meets both goals. *none* means that headroom alone does not meet both \
         on this family: where demand moves faster than a pod boots (steps, spikes, pods killed \
         or rolled, the fastest surges) nothing without foresight does better, and one of the two \
         goals has to give; on slower families a forecast can, and tidegate's column shows where \
         it does.\n"
    );
    s.push_str("| family | B | tidegate |");
    // Oracle-causal as the goals define it (o = 1), then at each frontier occupancy.
    let occupancies: Vec<(f64, Option<usize>)> = std::iter::once((1.0, None))
        .chain(FRONTIER.iter().enumerate().map(|(i, &o)| (o, Some(i))))
        .collect();
    for (o, _) in &occupancies {
        let _ = write!(s, " Oracle-causal, o = {o} |");
    }
    s.push_str(" both met at |\n|---|---:|---:|");
    s.push_str(&"---:|".repeat(occupancies.len() + 1));
    s.push('\n');
    for &family in families {
        for &boot in boots {
            let rows: Vec<&TraceResult> = results
                .iter()
                .filter(|r| {
                    r.family == family && r.boot == boot && r.frontier.len() == FRONTIER.len()
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                "| {} | {} s | {} |",
                family.name(),
                boot.as_secs(),
                cell(p90s(&rows, |r| &r.tidegate))
            );
            let mut met = Vec::new();
            for &(o, at) in &occupancies {
                let p = p90s(&rows, |r| at.map_or(&r.causal, |i| &r.frontier[i]));
                if p.2 {
                    met.push(o.to_string());
                }
                let _ = write!(s, " {} |", cell(p));
            }
            let met = if met.is_empty() {
                "*none*".to_string()
            } else {
                met.join(", ")
            };
            let _ = writeln!(s, " {met} |");
        }
    }
    s.push('\n');
}
