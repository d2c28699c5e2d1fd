//! The report on a set of generated traces: per family and boot delay the median, p90 and worst
//! of every goal ratio (a goal holds when its p90 is ≤ 1), the cells that miss, and — for the
//! validation set — the worst trace of every goal, re-run and explained from its record.

use std::fmt::Write as _;
use std::sync::Arc;

use super::generated::{Goal, Set, TraceResult, spread};
use super::{SuiteConfig, mark};
use crate::sim::families::{self, Family};
use crate::sim::policies::PolicyId;
use crate::sim::run::{RunSpec, run_one};
use crate::sim::setup::WorldConfig;

/// A ratio as the report prints it: two decimals, ∞, or – for none.
pub(super) fn num(x: f64) -> String {
    if x.is_infinite() {
        "∞".into()
    } else if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.2}")
    }
}

/// `median / p90 / worst ✅|❌` of a goal over some traces of `family` (`n/a` if it does not
/// apply; without a mark, and `None`, where it is shown for information only).
fn cell(rows: &[&TraceResult], family: Family, goal: Goal) -> (String, Option<bool>) {
    let mut xs: Vec<f64> = rows.iter().filter_map(|r| goal.of(r)).collect();
    if xs.is_empty() {
        return ("n/a".into(), None);
    }
    let (med, p90, worst) = spread(&mut xs);
    let text = format!("{} / {} / {}", num(med), num(p90), num(worst));
    if !goal.judged(family) {
        return (format!("*{text}*"), None);
    }
    let ok = p90 <= 1.0;
    (format!("{text} {}", mark(ok)), Some(ok))
}

fn p90_of(rows: &[&TraceResult], f: impl Fn(&TraceResult) -> f64) -> f64 {
    let mut xs: Vec<f64> = rows
        .iter()
        .map(|r| f(r))
        .filter(|x| x.is_finite())
        .collect();
    spread(&mut xs).1
}

/// Renders one set.
pub(super) fn render(
    s: &mut String,
    cfg: &SuiteConfig,
    set: Set,
    results: &[TraceResult],
    explain: bool,
) {
    let seeds = cfg.generated.seeds(set);
    let per_boot = cfg.generated.families.len() as u64 * cfg.generated.per_family;
    let _ = writeln!(
        s,
        "## Generated traces: the {} set{}\n\n\
         Traces `gen:<family>:<seed>` for seeds {}–{} of every family ({per_boot} traces per \
         boot delay), each run once (world seed = trace seed). Each cell is median / p90 / worst \
         of a ratio that meets its goal at ≤ 1; ✅/❌ is the p90. *Allowed* loss is HPA-prom's \
         loss, a tenth of it where HPA-prom loses more than 100, and on the instant families \
         (step, flash) up to 1.2 × Oracle-causal's when that is more (never above \
         HPA-prom's); lost / (1.2 × Oracle-causal's) is judged on those families and shown in \
         italics, for information, on the others. Storm scale-downs are the most in one trace \
         (goal 0); time to cover and settling time are p90s in seconds over the traces with \
         marks.\n",
        set.name(),
        if explain {
            " (judged)"
        } else {
            " (for tuning)"
        },
        seeds.start,
        seeds.end - 1,
    );
    s.push_str("| family | B |");
    for goal in Goal::ALL {
        let _ = write!(s, " {} |", goal.heading());
    }
    s.push_str(" storm scale-downs | cover s | settle s |\n|---|---:|");
    s.push_str(&"---:|".repeat(Goal::ALL.len() + 3));
    s.push('\n');
    let mut misses: Vec<String> = Vec::new();
    for family in &cfg.generated.families {
        for &boot in &cfg.boot_delays {
            let rows: Vec<&TraceResult> = results
                .iter()
                .filter(|r| r.family == *family && r.boot == boot)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let _ = write!(s, "| {} | {} s |", family.name(), boot.as_secs());
            for goal in Goal::ALL {
                let (text, ok) = cell(&rows, *family, goal);
                if ok == Some(false) {
                    misses.push(format!(
                        "{} B{} ({})",
                        family.name(),
                        boot.as_secs(),
                        goal.heading()
                    ));
                }
                let _ = write!(s, " {text} |");
            }
            let downs = rows
                .iter()
                .map(|r| r.tidegate.storm_scale_downs)
                .fold(0.0, f64::max);
            if downs > 0.0 {
                misses.push(format!(
                    "{} B{} (storm scale-downs)",
                    family.name(),
                    boot.as_secs()
                ));
            }
            let _ = writeln!(
                s,
                " {downs:.0} {} | {} | {} |",
                mark(downs == 0.0),
                num(p90_of(&rows, |r| r.tidegate.time_to_cover_s)).replace(".00", ""),
                num(p90_of(&rows, |r| r.tidegate.settling_s)).replace(".00", ""),
            );
        }
    }
    let _ = writeln!(
        s,
        "\n**Cells that miss a goal at p90 ({} set):** {}.\n",
        set.name(),
        if misses.is_empty() {
            "none".to_string()
        } else {
            misses.join(", ")
        }
    );
    super::frontier::render(s, &cfg.generated.families, &cfg.boot_delays, results);
    if explain {
        render_worst(s, results);
    }
}

/// The worst trace of every goal, among the families it is judged on, explained from a
/// recorded re-run.
fn render_worst(s: &mut String, results: &[TraceResult]) {
    let _ = writeln!(s, "### Worst cases of the validation set\n");
    for goal in Goal::ALL {
        let worst = results
            .iter()
            .filter(|r| goal.judged(r.family))
            .filter_map(|r| goal.of(r).map(|x| (x, r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((ratio, r)) = worst else { continue };
        let _ = writeln!(
            s,
            "- **{}** = {}: `{}` at B = {} s ({}). {}",
            goal.heading(),
            num(ratio),
            r.spec(),
            r.boot.as_secs(),
            families::describe(r.family, r.seed),
            diagnose(r, goal),
        );
    }
    s.push('\n');
}

/// What happened in a trace, from tidegate's recorded re-run, for the goal it missed most.
fn diagnose(r: &TraceResult, goal: Goal) -> String {
    let (tg, hpa) = (&r.tidegate, &r.hpa);
    match goal {
        Goal::Loss | Goal::VsHpa | Goal::VsCausal => {
            let head = format!(
                "tidegate lost {:.0} ({:.0} refused, {:.0} forced), HPA-prom {:.0}, \
                 Oracle-causal {:.0}, Oracle-feasible {:.0}",
                tg.lost(),
                tg.rejected,
                tg.forced_disconnects,
                hpa.lost(),
                r.causal.lost(),
                r.feasible.lost()
            );
            format!("{head}. {}", refusal_story(r))
        }
        Goal::Cost => {
            let secs = families::generate(r.family, r.seed)
                .duration()
                .as_secs_f64();
            format!(
                "tidegate averaged {:.1} pods (most asked {:.0}), LB2 {:.1}, HPA-prom {:.1}; demand \
                 averaged {:.1} pods' worth (LB1 {:.1}). The gap is tidegate's headroom at its \
                 occupancy targets plus the scale-down evidence window on falling demand.",
                tg.pod_seconds / secs,
                tg.max_replicas,
                r.feasible.pod_seconds / secs,
                hpa.pod_seconds / secs,
                tg.connection_hours * 3600.0 / secs / 1000.0,
                tg.lb1_pod_seconds / secs,
            )
        }
        Goal::Starts | Goal::Changes => format!(
            "tidegate started {:.0} pods ({:.0} cancelled while booting) in {:.0} replica \
             changes; Oracle-feasible {:.0} starts, HPA-prom {:.0} starts in {:.0} changes.",
            tg.pod_starts,
            tg.cancelled_boots,
            tg.replica_changes,
            r.feasible.pod_starts,
            hpa.pod_starts,
            hpa.replica_changes
        ),
    }
}

/// When tidegate refused connections, and how fast demand had risen just before.
fn refusal_story(r: &TraceResult) -> String {
    let trace = Arc::new(families::generate(r.family, r.seed));
    let spec = RunSpec {
        trace: Arc::clone(&trace),
        world: WorldConfig {
            boot_delay: r.boot,
            ..WorldConfig::default()
        },
        policy: PolicyId::Tidegate,
        seed: r.seed,
        record: true,
    };
    let out = run_one(&spec).output;
    let mut prev = 0;
    let mut spans: Vec<(f64, f64, u64)> = Vec::new();
    for d in &out.decisions {
        if d.rejected_total > prev {
            match spans.last_mut() {
                Some(last) if d.t - last.1 <= 30.0 => {
                    last.1 = d.t;
                    last.2 += d.rejected_total - prev;
                }
                _ => spans.push((d.t, d.t, d.rejected_total - prev)),
            }
        }
        prev = d.rejected_total;
    }
    let Some(&(from, to, count)) = spans.iter().max_by_key(|s| s.2) else {
        return "No refusals in the recorded re-run.".into();
    };
    let b = r.boot.as_secs_f64();
    let before = trace.at((from - b).max(0.0)).0;
    let peak = (from as u64..=to as u64)
        .map(|t| trace.at(t as f64).0)
        .fold(0.0, f64::max);
    format!(
        "Most refusals ({count}) fell in t = {from:.0}–{to:.0} s; demand was {before:.0} one \
         boot time before they began and peaked at {peak:.0} within them ({:+.0} %).",
        100.0 * (peak / before.max(1.0) - 1.0),
    )
}
