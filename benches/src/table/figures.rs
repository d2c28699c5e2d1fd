//! The rows of the table and how each is computed from one target's results in one repeat.

use super::{Figure, Record, Run};
use std::collections::BTreeSet;
use tidegate_tools::load::{Outcome, idle, latency};

/// The figures, with one memory row per idle step found in `records`.
pub(super) fn figures(records: &[Record]) -> Vec<Figure> {
    let steps: BTreeSet<usize> = records
        .iter()
        .filter_map(|r| idle_of(&r.result))
        .map(|i| i.connections)
        .collect();
    let mut rows: Vec<Figure> = steps.iter().map(|&c| bytes_per_conn(c)).collect();
    if let (Some(&lo), Some(&hi)) = (steps.first(), steps.last()) {
        if lo < hi {
            rows.push(slope(lo, hi));
        }
        rows.push(rss_at(hi));
    }
    for variant in handshake_variants(records) {
        rows.extend(handshake_rows(variant));
    }
    let latency_counts: BTreeSet<usize> = records
        .iter()
        .filter_map(|r| latency_of(&r.result))
        .map(|l| l.connections)
        .collect();
    for connections in latency_counts {
        rows.extend(latency_rows(connections));
    }
    rows.extend([
        row("proxy CPU per million 4 KiB echoes (s)", |o| match o {
            Outcome::Throughput(t) => t.cpu_s_per_million,
            _ => None,
        }),
        row("4 KiB echoes/s", |o| match o {
            Outcome::Throughput(t) => Some(t.msgs_per_s),
            _ => None,
        }),
    ]);
    rows
}

/// The variants of the handshake records: none for plain runs; the key types over TLS.
fn handshake_variants(records: &[Record]) -> BTreeSet<Option<&str>> {
    let mut variants: BTreeSet<Option<&str>> = records
        .iter()
        .filter(|r| matches!(r.result, Outcome::Handshakes(_)))
        .map(|r| r.variant.as_deref())
        .collect();
    if variants.is_empty() {
        variants.insert(None);
    }
    variants
}

/// The handshake rows of one variant: `ecdsa` and `rsa` are TLS handshakes with that key.
fn handshake_rows(variant: Option<&str>) -> [Figure; 2] {
    let what = match variant {
        None => "upgrades".to_owned(),
        Some("ecdsa") => "TLS handshakes + upgrades, ECDSA P-256".to_owned(),
        Some("rsa") => "TLS handshakes + upgrades, RSA 2048".to_owned(),
        Some(other) => format!("upgrades, {other}"),
    };
    let mut rows = [
        row(&format!("proxy CPU per 1,000 {what} (ms)"), |o| match o {
            Outcome::Handshakes(h) => h.cpu_ms_per_1k,
            _ => None,
        }),
        row(
            &format!("{what}/s (open + close, 32 in flight)"),
            |o| match o {
                Outcome::Handshakes(h) => Some(h.per_s),
                _ => None,
            },
        ),
    ];
    for r in &mut rows {
        r.variant = variant.map(str::to_owned);
    }
    rows
}

/// Reads one quantile of a latency report.
type Quantile = fn(&latency::Report) -> f64;

/// The latency rows of the runs with `connections` connections: the proxy's round trip, and
/// what it adds to the direct run's with as many connections in the same repeat.
fn latency_rows(connections: usize) -> Vec<Figure> {
    let at = format!("{} connection{}", count(connections), plural(connections));
    let quantiles: [(&str, Quantile); 3] = [
        ("p50", |l| l.p50_us),
        ("p99", |l| l.p99_us),
        ("p99.9", |l| l.p999_us),
    ];
    let own = quantiles.map(|(q, pick)| {
        let label = format!("round trip {q}, {at} (µs)");
        let value = move |run: &Run<'_>| latency_at(&run.own, connections).map(pick);
        Figure {
            label,
            value: Box::new(value),
            variant: None,
        }
    });
    let added = quantiles.map(|(q, pick)| {
        let label = format!("added round trip {q} vs direct, {at} (µs)");
        added(label, connections, pick)
    });
    own.into_iter().chain(added).collect()
}

/// A figure read from the first outcome of the run that yields a value.
fn row(label: &str, pick: fn(&Outcome) -> Option<f64>) -> Figure {
    Figure {
        label: label.to_owned(),
        value: Box::new(move |run: &Run<'_>| run.own.iter().find_map(|o| pick(o))),
        variant: None,
    }
}

/// A latency quantile minus the direct run's with as many connections in the same repeat
/// (none for direct itself).
fn added(label: String, connections: usize, quantile: Quantile) -> Figure {
    let value = move |run: &Run<'_>| {
        let own = latency_at(&run.own, connections)?;
        let direct = latency_at(&run.direct, connections)?;
        if std::ptr::eq(own, direct) {
            return None;
        }
        Some(quantile(own) - quantile(direct))
    };
    Figure {
        label,
        value: Box::new(value),
        variant: None,
    }
}

/// The latency run with `connections` connections among `outcomes`.
fn latency_at<'a>(outcomes: &[&'a Outcome], connections: usize) -> Option<&'a latency::Report> {
    outcomes
        .iter()
        .filter_map(|o| latency_of(o))
        .find(|l| l.connections == connections)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn bytes_per_conn(conns: usize) -> Figure {
    let value = move |run: &Run<'_>| step(run, conns).map(|i| i.bytes_per_conn);
    Figure {
        label: format!("RSS per idle WebSocket at {} (bytes)", count(conns)),
        value: Box::new(value),
        variant: None,
    }
}

/// Marginal bytes per connection between two steps of the same process.
fn slope(lo: usize, hi: usize) -> Figure {
    let value = move |run: &Run<'_>| {
        let (a, b) = (step(run, lo)?, step(run, hi)?);
        Some((b.rss_after_kb as f64 - a.rss_after_kb as f64) * 1024.0 / (hi - lo) as f64)
    };
    Figure {
        label: format!(
            "RSS slope {} → {} (bytes per WebSocket)",
            count(lo),
            count(hi)
        ),
        value: Box::new(value),
        variant: None,
    }
}

fn rss_at(conns: usize) -> Figure {
    let value = move |run: &Run<'_>| step(run, conns).map(|i| i.rss_after_kb as f64 / 1024.0);
    Figure {
        label: format!("RSS with {} idle WebSockets (MiB)", count(conns)),
        value: Box::new(value),
        variant: None,
    }
}

fn step<'a>(run: &Run<'a>, conns: usize) -> Option<&'a idle::Report> {
    run.own
        .iter()
        .filter_map(|o| idle_of(o))
        .find(|i| i.connections == conns)
}

fn idle_of(o: &Outcome) -> Option<&idle::Report> {
    match o {
        Outcome::Idle(i) => Some(i),
        _ => None,
    }
}

fn latency_of(o: &Outcome) -> Option<&latency::Report> {
    match o {
        Outcome::Latency(l) => Some(l),
        _ => None,
    }
}

/// `9900` → `9.9k`, `500` → `500`.
fn count(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(100) {
        let k = n as f64 / 1000.0;
        if n.is_multiple_of(1000) {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else {
        n.to_string()
    }
}
