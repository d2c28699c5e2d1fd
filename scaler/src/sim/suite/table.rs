//! Every generated trace's figures, one CSV row each, beside the report: the report shows
//! median, p90 and worst per family, this shows which trace gave them, for a reader to check or
//! plot. Columns: the set, the trace, B, then for tidegate, HPA-prom, Oracle-feasible and
//! Oracle-causal their losses (rejected + forced), pod-seconds, pod starts and replica changes,
//! then every goal ratio ([`Goal::ALL`], empty where a goal does not apply).

use std::fmt::Write as _;

use super::generated::{Goal, Set, TraceResult};
use crate::sim::metrics::RunMetrics;

/// The CSV header.
fn header() -> String {
    let mut s = String::from("set,trace,boot_s");
    for p in ["tidegate", "hpa_prom", "oracle_feasible", "oracle_causal"] {
        let _ = write!(s, ",{p}_lost,{p}_pod_s,{p}_starts,{p}_changes");
    }
    for g in Goal::ALL {
        let _ = write!(s, ",{}", g.key());
    }
    s.push('\n');
    s
}

fn policy(s: &mut String, m: &RunMetrics) {
    let _ = write!(
        s,
        ",{:.0},{:.0},{:.0},{:.0}",
        m.lost(),
        m.pod_seconds,
        m.pod_starts,
        m.replica_changes
    );
}

/// The rows of some sets, with the header.
pub fn render(sets: &[(Set, Vec<TraceResult>)]) -> String {
    let mut s = header();
    for (set, results) in sets {
        for r in results {
            let _ = write!(s, "{},{},{}", set.name(), r.spec(), r.boot.as_secs());
            for m in [&r.tidegate, &r.hpa, &r.feasible, &r.causal] {
                policy(&mut s, m);
            }
            for ratio in r.ratios() {
                match ratio {
                    Some(x) if x.is_infinite() => s.push_str(",inf"),
                    Some(x) => {
                        let _ = write!(s, ",{x:.3}");
                    }
                    None => s.push(','),
                }
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::families::Family;
    use std::time::Duration;

    #[test]
    fn one_row_per_trace_with_every_goal() {
        let m = |lost: f64| RunMetrics {
            rejected: lost,
            pod_seconds: 1000.0,
            pod_starts: 2.0,
            ..RunMetrics::default()
        };
        let r = TraceResult {
            family: Family::Flat,
            seed: 7,
            boot: Duration::from_secs(45),
            tidegate: m(3.0),
            hpa: m(0.0),
            feasible: m(0.0),
            causal: m(0.0),
            frontier: Vec::new(),
        };
        let text = render(&[(Set::Validation, vec![r])]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let cols = |l: &str| l.split(',').count();
        assert_eq!(cols(lines[0]), cols(lines[1]));
        assert!(lines[1].starts_with("validation,gen:flat:7,45,3,1000,2,0,"));
        assert!(lines[1].contains(",inf,"), "3 lost against HPA's 0");
        assert!(lines[0].ends_with("changes_vs_hpa"));
    }
}
