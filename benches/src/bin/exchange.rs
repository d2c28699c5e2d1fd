//! The peer exchange's cost and quality, side by side for one replica and for N (default 10)
//! replicas × B (default 500) backends, on the pure protocol code (`tidegate_common::share`)
//! over a simulated network: exchange CPU and bytes per second, view staleness p50/p99 on a
//! clean and on a lossy, slow network, cap overshoot (must be 0) and what share fragmentation
//! costs under bursts (refused while a slot was free elsewhere, and the slots used after one
//! retry round).
//!
//!   cargo run --release -p tidegate-benches --bin exchange [-- --replicas 10 --backends 500]
//!
//! Time is simulated, so the figures do not depend on the machine except CPU, which is the
//! real time spent in the nodes and the codec (wall clock of a single thread: run it on a quiet
//! machine, or count instructions: `--steady N` runs only the steady run of N replicas, and
//! under `valgrind --tool=callgrind --zero-before='*measure_from_here*'
//! --toggle-collect='*Node::tick*' --toggle-collect='*Node::receive*'
//! --toggle-collect='*wire::encode*' --toggle-collect='*wire::decode*'` the total is the
//! exchange's instructions over the steady seconds; see benches/README.md).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tidegate_common::share::Settings;
use tidegate_common::share::sim::{Cluster, Network, Stats};

/// Flags.
#[derive(Debug, Parser)]
#[command(about = "The peer exchange's cost and quality, one replica next to N")]
struct Args {
    /// Replicas of the cluster column.
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Backends.
    #[arg(long, default_value_t = 500)]
    backends: usize,
    /// Cap per backend.
    #[arg(long, default_value_t = 100)]
    capacity: u32,
    /// Simulated seconds of the steady run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only the clean steady run of this many replicas (for instruction counts), printing
    /// its bytes and reports per replica per second.
    #[arg(long)]
    steady: Option<usize>,
}

const INTERVAL: Duration = Duration::from_millis(200);

/// One column of the table.
struct Column {
    cpu_us_per_s: f64,
    bytes_per_s: f64,
    report_bytes: f64,
    clean: (Duration, Duration),
    lossy: (Duration, Duration),
    overshoot: u64,
    first_round: f64,
    after_retry: f64,
    skewed_first_round: f64,
    skewed_after_retry: f64,
}

fn backends(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 9000)))
        .collect()
}

fn cluster(a: &Args, replicas: usize, network: Network) -> Cluster {
    let settings = Settings::default();
    let bs = backends(a.backends);
    Cluster::new(
        replicas, &bs, a.capacity, INTERVAL, settings, network, a.seed,
    )
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Half the slots held, spread evenly, with 2 % of the connections churning every second.
fn steady(a: &Args, replicas: usize, network: Network) -> Stats {
    let mut c = cluster(a, replicas, network);
    c.run_for(Duration::from_secs(3));
    let half = a.capacity as usize * a.backends / 2;
    for r in 0..replicas {
        c.arrive(r, (half / replicas) as u32);
    }
    c.run_for(Duration::from_secs(2));
    c.stats = Stats::default();
    measure_from_here();
    let churn = (half / 50 / replicas).max(1);
    for _ in 0..a.seconds {
        for r in 0..replicas {
            c.depart(r, churn);
            c.arrive(r, churn as u32);
        }
        c.run_for(Duration::from_secs(1));
    }
    c.stats
}

/// Where the steady phase starts: callgrind's `--zero-before` target.
#[inline(never)]
fn measure_from_here() {
    std::hint::black_box(());
}

/// Bursts of arrivals for 60 % of the free slots, `skew` of them at the first two replicas and
/// the rest spread; the refused retry once a second later. Returns the refused-with-room share
/// of first attempts, the share of the burst admitted after the retry, and the stats.
fn bursts(a: &Args, replicas: usize, skew: f64) -> (f64, f64, Stats) {
    let mut c = cluster(a, replicas, Network::default());
    c.run_for(Duration::from_secs(3));
    let slots = a.capacity as usize * a.backends;
    let (mut first, mut with_room, mut wanted, mut admitted) = (0u64, 0u64, 0u64, 0u64);
    for round in 0..5 {
        let free = slots - c.occupied() as usize;
        let burst = free * 6 / 10;
        let hot = if replicas > 2 { 2 } else { replicas };
        let at = |r: usize| -> usize {
            let share = if r < hot {
                skew / hot as f64
            } else {
                (1.0 - skew) / (replicas - hot) as f64
            };
            (burst as f64 * share).round() as usize
        };
        let before = c.stats.clone();
        let mut refused = Vec::new();
        for r in 0..replicas {
            let n = at(r) as u32;
            let got = c.arrive(r, n);
            refused.push(n - got);
            admitted += u64::from(got);
            wanted += u64::from(n);
        }
        first += c.stats.attempts - before.attempts;
        with_room += c.stats.refused_with_room - before.refused_with_room;
        c.run_for(Duration::from_secs(1));
        for (r, n) in refused.into_iter().enumerate() {
            admitted += u64::from(c.arrive(r, n));
        }
        c.run_for(Duration::from_secs(2));
        // A tenth of the connections leave before the next burst.
        for r in 0..replicas {
            let held = c.replicas[r].as_ref().map_or(0, |x| x.connections.len());
            c.depart(r, held / 10 + round);
        }
        c.run_for(Duration::from_secs(2));
    }
    let frag = with_room as f64 / first.max(1) as f64;
    (frag, admitted as f64 / wanted.max(1) as f64, c.stats)
}

fn column(a: &Args, replicas: usize) -> Column {
    let clean = steady(a, replicas, Network::default());
    let lossy_net = Network {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
        loss: 0.05,
    };
    let lossy = steady(a, replicas, lossy_net);
    let (first_round, after_retry, b1) = bursts(a, replicas, 0.7);
    let (skewed_first_round, skewed_after_retry, b2) = bursts(a, replicas, 1.0);
    let secs = a.seconds as f64;
    let overshoot = [&clean, &lossy, &b1, &b2]
        .iter()
        .map(|s| s.overshoot.max(s.share_overshoot))
        .max()
        .unwrap_or(0);
    Column {
        cpu_us_per_s: clean.cpu.as_secs_f64() * 1e6 / secs / replicas as f64,
        bytes_per_s: clean.bytes as f64 / secs / replicas as f64,
        report_bytes: clean.bytes as f64 / clean.reports.max(1) as f64,
        clean: quantiles(clean.staleness),
        lossy: quantiles(lossy.staleness),
        overshoot,
        first_round,
        after_retry,
        skewed_first_round,
        skewed_after_retry,
    }
}

fn main() {
    let a = Args::parse();
    if let Some(n) = a.steady {
        let s = steady(&a, n, Network::default());
        let per = (a.seconds as f64) * n as f64;
        println!(
            "steady: {n} replicas × {} backends, {} s: {:.0} bytes and {:.1} reports sent per replica per second",
            a.backends,
            a.seconds,
            s.bytes as f64 / per,
            s.reports as f64 / per
        );
        return;
    }
    let one = column(&a, 1);
    let many = column(&a, a.replicas);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let rows: Vec<(&str, String, String)> = vec![
        (
            "exchange CPU per replica (µs per second, wall, one thread)",
            format!("{:.0}", one.cpu_us_per_s),
            format!("{:.0}", many.cpu_us_per_s),
        ),
        (
            "bytes sent per replica per second",
            format!("{:.0}", one.bytes_per_s),
            format!("{:.0}", many.bytes_per_s),
        ),
        (
            "report size (bytes)",
            format!("{:.0}", one.report_bytes),
            format!("{:.0}", many.report_bytes),
        ),
        (
            "view staleness p50 / p99, clean network (0.2–2 ms)",
            "–".into(),
            format!("{} / {}", ms(many.clean.0), ms(many.clean.1)),
        ),
        (
            "view staleness p50 / p99, 1–50 ms and 5 % loss",
            "–".into(),
            format!("{} / {}", ms(many.lossy.0), ms(many.lossy.1)),
        ),
        (
            "cap overshoot, connections or shares (must be 0)",
            one.overshoot.to_string(),
            many.overshoot.to_string(),
        ),
        (
            "bursts 70 % at 2 replicas: refused while room elsewhere",
            pct(one.first_round),
            pct(many.first_round),
        ),
        (
            "… share of the bursts admitted after one retry round",
            pct(one.after_retry),
            pct(many.after_retry),
        ),
        (
            "bursts all at 2 replicas: refused while room elsewhere",
            pct(one.skewed_first_round),
            pct(many.skewed_first_round),
        ),
        (
            "… share of the bursts admitted after one retry round",
            pct(one.skewed_after_retry),
            pct(many.skewed_after_retry),
        ),
    ];
    println!(
        "| {} backends × cap {}, sync every {} ms, {} s steady | 1 replica | {} replicas |",
        a.backends,
        a.capacity,
        INTERVAL.as_millis(),
        a.seconds,
        a.replicas
    );
    println!("|---|---|---|");
    for (name, x, y) in rows {
        println!("| {name} | {x} | {y} |");
    }
}
