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
use tidegate_common::table::queue::QueuePolicy;

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
    /// How long an attempt the replica has no room for waits in its queue in the burst runs,
    /// in ms (the proxy's `queue_timeout`; 0 refuses at once). At most 1000: the refused
    /// retry a second after the burst.
    #[arg(long, default_value_t = 1000)]
    queue_timeout_ms: u64,
    /// The most attempts waiting at once per replica in the burst runs (the proxy's
    /// `queue_max`, whose default this is).
    #[arg(long, default_value_t = 1024)]
    queue_max: usize,
    /// Spreads each burst's arrivals evenly over this many ms (ten equal parts); 0: all at one
    /// instant.
    #[arg(long, default_value_t = 0)]
    burst_ms: u64,
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
    spread: Burst,
    skewed: Burst,
}

/// What the burst runs measured.
struct Burst {
    /// First attempts refused while a slot was free elsewhere (fragmentation).
    first_round: f64,
    /// Share of the bursts admitted after one retry round.
    after_retry: f64,
    /// Share of the first attempts that waited in a queue.
    queued: f64,
    /// Their wait, p50 and p99.
    wait: (Duration, Duration),
    /// Ticks brought forward per replica per burst.
    early_ticks: f64,
    stats: Stats,
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
/// the rest spread, all at one instant (or over `--burst-ms`); what a replica has no room for
/// waits in its queue (up to `--queue-timeout-ms`) or is refused, and the refused retry once a
/// second after the last arrival.
fn bursts(a: &Args, replicas: usize, skew: f64) -> Burst {
    const ROUNDS: usize = 5;
    const SLICES: usize = 10;
    let mut c = cluster(a, replicas, Network::default());
    c.set_queue(QueuePolicy {
        timeout: Duration::from_millis(a.queue_timeout_ms.min(1000)),
        max_waiting: a.queue_max,
    });
    c.run_for(Duration::from_secs(3));
    let slots = a.capacity as usize * a.backends;
    let (mut first, mut with_room, mut wanted, mut admitted) = (0u64, 0u64, 0u64, 0u64);
    let (mut queued, mut waits, mut early) = (0u64, Vec::new(), 0u64);
    let counts = |c: &Cluster, r: usize| {
        let x = c.replicas[r].as_ref();
        x.map_or((0, 0), |x| (x.admitted(), x.refused()))
    };
    for round in 0..ROUNDS {
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
        let start: Vec<(u64, u64)> = (0..replicas).map(|r| counts(&c, r)).collect();
        // In SLICES equal parts over --burst-ms, or all at one instant.
        let slices = if a.burst_ms == 0 { 1 } else { SLICES };
        for slice in 0..slices {
            for r in 0..replicas {
                let n = (at(r) * (slice + 1) / slices - at(r) * slice / slices) as u32;
                c.arrive(r, n);
                wanted += u64::from(n);
            }
            if a.burst_ms > 0 {
                c.run_for(Duration::from_millis(a.burst_ms) / slices as u32);
            }
        }
        first += c.stats.attempts - before.attempts;
        queued += c.stats.queued - before.queued;
        // Every first attempt is admitted or refused within the queue timeout (≤ 1 s).
        c.run_for(Duration::from_secs(1));
        with_room += c.stats.refused_with_room - before.refused_with_room;
        waits.extend_from_slice(&c.stats.waits[before.waits.len()..]);
        early += c.stats.early_ticks - before.early_ticks;
        for (r, &(_, refused0)) in start.iter().enumerate() {
            let refused = counts(&c, r).1 - refused0;
            c.arrive(r, u32::try_from(refused).unwrap_or(u32::MAX));
        }
        c.run_for(Duration::from_secs(2));
        for (r, &(admitted0, _)) in start.iter().enumerate() {
            admitted += counts(&c, r).0 - admitted0;
        }
        // A tenth of the connections leave before the next burst.
        for r in 0..replicas {
            let held = c.replicas[r].as_ref().map_or(0, |x| x.connections.len());
            c.depart(r, held / 10 + round);
        }
        c.run_for(Duration::from_secs(2));
    }
    Burst {
        first_round: with_room as f64 / first.max(1) as f64,
        after_retry: admitted as f64 / wanted.max(1) as f64,
        queued: queued as f64 / first.max(1) as f64,
        wait: quantiles(waits),
        early_ticks: early as f64 / (ROUNDS * replicas) as f64,
        stats: c.stats,
    }
}

fn column(a: &Args, replicas: usize) -> Column {
    let clean = steady(a, replicas, Network::default());
    let lossy_net = Network {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
        loss: 0.05,
    };
    let lossy = steady(a, replicas, lossy_net);
    let spread = bursts(a, replicas, 0.7);
    let skewed = bursts(a, replicas, 1.0);
    let secs = a.seconds as f64;
    let overshoot = [&clean, &lossy, &spread.stats, &skewed.stats]
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
        spread,
        skewed,
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
    let mut rows: Vec<(String, String, String)> = vec![
        (
            "exchange CPU per replica (µs per second, wall, one thread)".into(),
            format!("{:.0}", one.cpu_us_per_s),
            format!("{:.0}", many.cpu_us_per_s),
        ),
        (
            "bytes sent per replica per second".into(),
            format!("{:.0}", one.bytes_per_s),
            format!("{:.0}", many.bytes_per_s),
        ),
        (
            "report size (bytes)".into(),
            format!("{:.0}", one.report_bytes),
            format!("{:.0}", many.report_bytes),
        ),
        (
            "view staleness p50 / p99, clean network (0.2–2 ms)".into(),
            "–".into(),
            format!("{} / {}", ms(many.clean.0), ms(many.clean.1)),
        ),
        (
            "view staleness p50 / p99, 1–50 ms and 5 % loss".into(),
            "–".into(),
            format!("{} / {}", ms(many.lossy.0), ms(many.lossy.1)),
        ),
        (
            "cap overshoot, connections or shares (must be 0)".into(),
            one.overshoot.to_string(),
            many.overshoot.to_string(),
        ),
    ];
    for (name, x, y) in burst_rows(&one.spread, &many.spread, "70 % at 2 replicas")
        .into_iter()
        .chain(burst_rows(&one.skewed, &many.skewed, "all at 2 replicas"))
    {
        rows.push((name, x, y));
    }
    println!(
        "| {} backends × cap {}, sync every {} ms, {} s steady | 1 replica | {} replicas |",
        a.backends,
        a.capacity,
        INTERVAL.as_millis(),
        a.seconds,
        a.replicas
    );
    println!(
        "| queue in the burst runs: timeout {} ms, max {}; bursts over {} ms | | |",
        a.queue_timeout_ms.min(1000),
        a.queue_max,
        a.burst_ms
    );
    println!("|---|---|---|");
    for (name, x, y) in rows {
        println!("| {name} | {x} | {y} |");
    }
}

/// The table rows of one burst scenario, one replica next to N.
fn burst_rows(one: &Burst, many: &Burst, what: &str) -> Vec<(String, String, String)> {
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let waits = |b: &Burst| format!("{} / {}", ms(b.wait.0), ms(b.wait.1));
    vec![
        (
            format!("bursts {what}: first attempts refused while room elsewhere"),
            pct(one.first_round),
            pct(many.first_round),
        ),
        (
            "… first attempts that waited in a queue".into(),
            pct(one.queued),
            pct(many.queued),
        ),
        (
            "… their wait p50 / p99 (simulated)".into(),
            waits(one),
            waits(many),
        ),
        (
            "… ticks brought forward per replica per burst".into(),
            format!("{:.1}", one.early_ticks),
            format!("{:.1}", many.early_ticks),
        ),
        (
            "… share of the bursts admitted after one retry round".into(),
            pct(one.after_retry),
            pct(many.after_retry),
        ),
    ]
}
