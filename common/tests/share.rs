//! The share protocol's invariant under a hostile network: whatever the arrivals, departures,
//! message loss, delays (and so reordering), replica kills and starts, the connections held on
//! a backend over all live replicas never exceed its cap, nor do their shares; and once the
//! network has had time, the live replicas hold the whole cap between them.

#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use tidegate_common::share::Settings;
use tidegate_common::share::sim::{Cluster, Network};
use tidegate_common::table::queue::QueuePolicy;

#[derive(Clone, Debug)]
enum Op {
    Arrive { replica: usize, n: u32 },
    Depart { replica: usize, n: usize },
    Run { ms: u64 },
    Kill { replica: usize },
    Start,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8usize, 1..30u32).prop_map(|(replica, n)| Op::Arrive { replica, n }),
        3 => (0..8usize, 1..20usize).prop_map(|(replica, n)| Op::Depart { replica, n }),
        6 => (1..1500u64).prop_map(|ms| Op::Run { ms }),
        1 => (0..8usize).prop_map(|replica| Op::Kill { replica }),
        1 => Just(Op::Start),
    ]
}

fn backends(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 0, 0, i as u8 + 1], 9000)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("SHARE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96), ..ProptestConfig::default() })]

    #[test]
    fn caps_hold_on_the_sum_under_loss_delay_reordering_and_kills(
        replicas in 1..5usize,
        nbackends in 1..4usize,
        cap in 1..25u32,
        loss in 0.0..0.3f64,
        max_delay_ms in 0..500u64,
        seed in any::<u64>(),
        queue_ms in prop_oneof![Just(0u64), 1..1000u64],
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let network = Network {
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(max_delay_ms),
            loss,
        };
        let settings = Settings { peer_timeout: Duration::from_secs(5) };
        let interval = Duration::from_millis(200);
        let mut c = Cluster::new(
            replicas, &backends(nbackends), cap, interval, settings, network, seed,
        );
        // Attempts without room wait (and are admitted as shares arrive) or are refused.
        c.set_queue(QueuePolicy { timeout: Duration::from_millis(queue_ms), max_waiting: 16 });
        for op in ops {
            let n = c.replicas.len();
            match op {
                Op::Arrive { replica, n: k } => drop(c.arrive(replica % n, k)),
                Op::Depart { replica, n: k } => c.depart(replica % n, k),
                Op::Run { ms } => c.run_for(Duration::from_millis(ms)),
                Op::Kill { replica } => c.kill(replica % n),
                Op::Start if n < 8 => drop(c.start()),
                Op::Start => {}
            }
            prop_assert_eq!(c.stats.overshoot, 0, "connections above the cap");
            prop_assert_eq!(c.stats.share_overshoot, 0, "shares above the cap");
        }
        prop_assert!(!c.false_drops(), "a live replica was dropped");
        // Given time, the live replicas hold the whole cap of every backend.
        c.run_for(Duration::from_secs(20));
        let live = c.replicas.iter().flatten().count();
        if live > 0 {
            for b in backends(nbackends) {
                let held: u32 = c.replicas.iter().flatten().map(|r| r.table.share(b)).sum();
                prop_assert_eq!(held, cap, "{} after 20 s", b);
            }
        }
        prop_assert_eq!(c.stats.overshoot, 0);
        prop_assert_eq!(c.stats.share_overshoot, 0);
    }
}

#[test]
fn a_burst_spread_over_three_replicas_fills_the_cap_after_one_retry_round() {
    let settings = Settings::default();
    let interval = Duration::from_millis(200);
    let mut c = Cluster::new(
        3,
        &backends(3),
        4,
        interval,
        settings,
        Network::default(),
        7,
    );
    c.run_for(Duration::from_secs(2));
    // 12 slots; 18 clients arrive at once, unevenly: 10, 6, 2.
    let first: u32 = [(0, 10), (1, 6), (2, 2)]
        .iter()
        .map(|&(r, n)| c.arrive(r, n))
        .sum();
    c.run_for(Duration::from_secs(1));
    let refused = 18 - first;
    let again = c.arrive(0, refused.min(10)) + c.arrive(1, refused.saturating_sub(10));
    let used = first + again;
    assert!(used >= 11, "{first} + {again} of 12 slots after one retry");
    assert_eq!(c.stats.overshoot, 0);
}

#[test]
fn upgrades_waiting_for_a_share_get_one_within_a_round_trip_not_a_sync_interval() {
    let interval = Duration::from_millis(200);
    let network = Network::default(); // 0.2–2 ms one way
    let mut c = Cluster::new(
        3,
        &backends(1),
        30,
        interval,
        Settings::default(),
        network,
        11,
    );
    c.set_queue(QueuePolicy {
        timeout: Duration::from_secs(1),
        max_waiting: 64,
    });
    c.run_for(Duration::from_secs(2));
    let share = c.replicas[0].as_ref().unwrap().table.share(backends(1)[0]);
    assert!((9..=11).contains(&share), "an even split first: {share}");
    // Twice its share at replica 0, at once: the rest waits for the others' spare share.
    let at_once = c.arrive(0, 20);
    assert_eq!(at_once, share);
    c.run_for(Duration::from_millis(30));
    let r = c.replicas[0].as_ref().unwrap();
    assert_eq!(
        (r.admitted(), r.refused(), r.waiting()),
        (20, 0, 0),
        "all served within 30 ms"
    );
    let longest = c.stats.waits.iter().max().copied().unwrap_or_default();
    assert!(longest < Duration::from_millis(30), "waited {longest:?}");
    assert!(c.stats.early_ticks > 0);
    assert_eq!(c.stats.overshoot, 0);
}
