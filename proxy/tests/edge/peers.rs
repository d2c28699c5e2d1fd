//! Several edges as one: three `tidegate proxy` processes listing each other share three small
//! backends. A burst spread unevenly over them never puts a backend above its cap (the echo
//! backends' own socket counts say so), fills the slots after one retry round, and every edge
//! sees the cluster's counts; an edge killed with SIGKILL leaves the view within peer_timeout
//! and a second, and the survivors refill its slots to the cap and not beyond.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::edge_process::EdgeProcess;
use crate::support::{Backend, Ws, wait_until};

const CAP: usize = 4;
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

fn config(backends: &[&Backend], peers: &[SocketAddr]) -> String {
    let list = |a: &[String]| format!("[{}]", a.join(", "));
    let backends: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
    format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog_format: json\n\
         backends:\n  static: {}\nmax_connections_per_backend: {CAP}\nqueue_timeout: 0s\n\
         grace_period: 1s\nshutdown_timeout: 1s\npeers:\n  static: {}\n  peer_timeout: 5s\n",
        list(&backends),
        list(&peers)
    )
}

/// Each backend's share summed over the edges' states.
fn shares(states: &[Value]) -> Vec<u64> {
    let n = states[0]["backends"].as_array().unwrap().len();
    (0..n)
        .map(|i| {
            let share = |s: &Value| s["backends"][i]["share"].as_u64().unwrap_or(0);
            states.iter().map(share).sum()
        })
        .collect()
}

async fn states(edges: &[&EdgeProcess]) -> Vec<Value> {
    join_all(edges.iter().map(|e| e.state())).await
}

/// `n` simultaneous connection attempts through `edge`; the refused ones are counted.
async fn burst(edge: &EdgeProcess, n: usize) -> (Vec<Ws>, usize) {
    let tries = join_all((0..n).map(|_| edge.try_ws())).await;
    let refused = tries.iter().filter(|t| t.is_err()).count();
    (tries.into_iter().flatten().collect(), refused)
}

fn open(backends: &[&Backend]) -> usize {
    backends.iter().map(|b| b.stats.open()).sum()
}

fn assert_never_above_cap(backends: &[&Backend]) {
    for b in backends {
        assert!(
            b.stats.peak() <= CAP,
            "{} held {} at once (cap {CAP})",
            b.addr,
            b.stats.peak()
        );
    }
}

/// Waits until every edge's `cluster_live` (and each backend's) is the backends' truth.
async fn views_match(edges: &[&EdgeProcess], backends: &[&Backend]) -> Duration {
    let t0 = Instant::now();
    wait_until("every edge sees the cluster's counts", || async {
        let truth: Vec<u64> = backends.iter().map(|b| b.stats.open() as u64).collect();
        states(edges).await.iter().all(|s| {
            let per_backend = (0..backends.len())
                .all(|i| s["backends"][i]["cluster_live"].as_u64() == Some(truth[i]));
            per_backend && s["totals"]["cluster_live"].as_u64() == Some(truth.iter().sum())
        })
    })
    .await;
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_hold_the_caps_on_the_sum_and_survive_a_sigkill() {
    let (b1, b2, b3) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let backends = [&b1, &b2, &b3];
    let dir = tempfile::tempdir().unwrap();
    let a = EdgeProcess::start(dir.path(), "a", &config(&backends, &[])).await;
    let b = EdgeProcess::start(dir.path(), "b", &config(&backends, &[a.admin])).await;
    let mut c = EdgeProcess::start(dir.path(), "c", &config(&backends, &[a.admin, b.admin])).await;
    // From now on every edge lists every edge, itself included (one list for all, reloaded).
    let all = [a.admin, b.admin, c.admin];
    for e in [&a, &b, &c] {
        e.rewrite(&config(&backends, &all));
    }
    let edges = [&a, &b, &c];
    wait_until(
        "three edges, each seeing two peers, caps fully shared",
        || async {
            let s = states(&edges).await;
            let peers_up = |s: &Value| {
                let peers = s["peers"].as_array().unwrap();
                peers.iter().filter(|p| p["up"] == true).count()
            };
            let held = |s: &Value| -> u64 {
                let backends = s["backends"].as_array().unwrap();
                backends
                    .iter()
                    .map(|b| b["share"].as_u64().unwrap_or(0))
                    .sum()
            };
            s.iter().all(|s| peers_up(s) == 2 && held(s) >= 3) && shares(&s) == vec![CAP as u64; 3]
        },
    )
    .await;

    // 24 clients at once for 12 slots, unevenly over the edges.
    let (burst_a, burst_b, burst_c) = tokio::join!(burst(&a, 14), burst(&b, 7), burst(&c, 3));
    let mut held: Vec<Ws> = Vec::new();
    let mut refused_at = Vec::new();
    for (edge, (ws, refused)) in [(&a, burst_a), (&b, burst_b), (&c, burst_c)] {
        held.extend(ws);
        refused_at.push((edge, refused));
    }
    assert_never_above_cap(&backends);
    let first = held.len();
    assert!(first <= 3 * CAP);
    // The free slots move toward the edges that refused; then the refused clients retry once.
    wait_until("free shares moved to where the arrivals were", || async {
        let s = c.state().await;
        let free: u64 = (0..3)
            .map(|i| {
                let b = &s["backends"][i];
                b["share"].as_u64().unwrap() - b["live"].as_u64().unwrap()
            })
            .sum();
        first == 3 * CAP || free == 0
    })
    .await;
    for (edge, refused) in refused_at {
        let (ws, _) = burst(edge, refused).await;
        held.extend(ws);
    }
    assert_never_above_cap(&backends);
    let used = open(&backends);
    assert_eq!(
        used,
        held.len(),
        "every admitted client holds a backend socket"
    );
    assert!(
        used * 10 >= 3 * CAP * 9,
        "{used} of {} slots used after one retry round (first round {first})",
        3 * CAP
    );
    let took = views_match(&edges, &backends).await;
    assert!(
        took <= Duration::from_secs(1),
        "views agreed after {took:?}"
    );

    // SIGKILL the third edge: its clients' connections die with it.
    let c_live = c.state().await["totals"]["live"].as_u64().unwrap();
    assert!(c_live > 0, "c holds connections when it dies");
    let t0 = Instant::now();
    c.kill();
    let left = used - c_live as usize;
    wait_until("c's backend sockets are closed", || async {
        open(&backends) == left
    })
    .await;
    let survivors = [&a, &b];
    views_match(&survivors, &backends).await;
    let dropped_after = t0.elapsed();
    assert!(
        dropped_after <= PEER_TIMEOUT + Duration::from_secs(1),
        "the survivors dropped c's {c_live} connections after {dropped_after:?}"
    );
    // The survivors take c's share over and refill every slot, and no more.
    let refill = std::sync::Mutex::new(Vec::new());
    wait_until("the survivors refill to the cap", || async {
        let (ws_a, _) = burst(&a, 1).await;
        let (ws_b, _) = burst(&b, 1).await;
        let mut r = refill.lock().unwrap();
        r.extend(ws_a);
        r.extend(ws_b);
        open(&backends) == 3 * CAP
    })
    .await;
    held.extend(refill.into_inner().unwrap());
    let (extra_a, refused_a) = burst(&a, 3).await;
    let (extra_b, refused_b) = burst(&b, 3).await;
    assert!(
        extra_a.is_empty() && extra_b.is_empty(),
        "full: nothing beyond the cap"
    );
    assert_eq!(refused_a + refused_b, 6);
    assert_never_above_cap(&backends);
    let s = states(&survivors).await;
    assert_eq!(
        shares(&s),
        vec![CAP as u64; 3],
        "c's share is the survivors' now"
    );
    let m = a.metrics().await;
    assert!(m.contains("tidegate_peer_up{peer=\""), "{m}");
    assert!(
        m.contains("tidegate_backend_cluster_connections{backend=\""),
        "{m}"
    );
    drop(held);
}

/// A proxy with a `peers` section but no peer at all.
fn alone(backend: &Backend, cap: u32) -> tidegate_proxy::config::Config {
    let mut c = crate::support::config(&[backend.addr], cap);
    c.peers = Some(tidegate_proxy::config::Peers::default());
    c.request_header_timeout = Duration::from_secs(1);
    c.queue_timeout = Duration::ZERO;
    c.validate().unwrap();
    c
}

#[tokio::test]
async fn a_replica_alone_holds_whole_caps_and_admits_as_without_peers() {
    let be = Backend::start().await;
    let proxy = crate::support::start_proxy(alone(&be, 2));
    wait_until("the lone replica claimed the cap", || async {
        crate::support::state(&proxy).await["backends"][0]["share"] == 2
    })
    .await;
    let _a = crate::support::ws(&proxy).await;
    let _b = crate::support::ws(&proxy).await;
    assert!(crate::support::try_ws(&proxy).await.is_err(), "cap 2");
    let s = crate::support::state(&proxy).await;
    assert_eq!(s["totals"]["cluster_live"], 2);
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn hostile_pushes_get_a_clear_answer_and_a_count_and_change_nothing() {
    use crate::support::{metrics, raw, sample, state, ws};
    let be = Backend::start().await;
    let proxy = crate::support::start_proxy(alone(&be, 5));
    wait_until("ready", || async {
        state(&proxy).await["backends"][0]["share"] == 5
    })
    .await;
    let mut held = ws(&proxy).await;
    let post = |len: &str, body: &[u8]| {
        let mut r = format!("POST /api/v1/peer/sync HTTP/1.1\r\nHost: t\r\n{len}\r\n").into_bytes();
        r.extend_from_slice(body);
        r
    };
    let garbage = raw(proxy.admin_addr, &post("Content-Length: 7\r\n", b"garbage")).await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert!(garbage.contains("Tidegate-Member: "), "{garbage}");
    let no_length = raw(proxy.admin_addr, &post("", b"")).await;
    assert!(no_length.starts_with("HTTP/1.1 411"), "{no_length}");
    let huge = raw(proxy.admin_addr, &post("Content-Length: 99999999\r\n", b"")).await;
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    // Announces 100 bytes, sends 10, then nothing: dropped after the header timeout.
    let slow = raw(
        proxy.admin_addr,
        &post("Content-Length: 100\r\n", b"TGP2......"),
    )
    .await;
    assert!(slow.is_empty(), "closed without an answer: {slow}");
    let m = metrics(&proxy).await;
    for kind in ["bad_magic", "no_length", "too_large", "body_timeout"] {
        let series = format!("tidegate_peer_sync_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(sample(&m, &series), Some(1.0), "{series}");
    }
    let s = state(&proxy).await;
    assert_eq!(s["backends"][0]["share"], 5, "nothing applied");
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(0));
    crate::support::echo_once(&mut held, "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_beside_a_local_pool_takes_its_backends_and_drain_marks_from_the_peers() {
    use crate::support::{start_proxy, state, try_ws};
    use tidegate_proxy::config::{LocalBackends, Peers};
    let mut pool = crate::support::config(&[], 3);
    pool.queue_timeout = Duration::ZERO;
    pool.backends.local = Some(LocalBackends {
        command: Some(format!(
            "{} echo-backend --listen 127.0.0.1:{{port}}",
            env!("CARGO_BIN_EXE_tidegate")
        )),
        port_range: [33000, 33999],
        initial: 2,
        ..LocalBackends::default()
    });
    pool.peers = Some(Peers::default());
    let a = start_proxy(pool.clone());
    let mut beside = crate::support::config(&[], 3);
    beside.queue_timeout = Duration::ZERO;
    beside.backends.from_peers = true;
    beside.peers = Some(Peers {
        static_: vec![a.admin_addr],
        ..Peers::default()
    });
    beside.validate().unwrap();
    let b = start_proxy(beside);
    let ready = |s: &Value| {
        let bs = s["backends"].as_array().unwrap();
        bs.len() == 2
            && bs
                .iter()
                .all(|b| b["state"] == "ready" && b["share"].as_u64() > Some(0))
    };
    let shares = |s: &Value| -> u64 {
        let bs = s["backends"].as_array().unwrap();
        bs.iter().filter_map(|b| b["share"].as_u64()).sum()
    };
    // The split settles (nothing in flight) before the slots are taken, so each attempt goes
    // to an edge that holds room; which edge holds how many is the rebalancer's business.
    wait_until(
        "both edges route to the pool's two backends, all six slots held",
        || async {
            let (sa, sb) = (state(&a).await, state(&b).await);
            ready(&sa) && ready(&sb) && shares(&sa) + shares(&sb) == 6
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..6 {
        let ws = match try_ws(&a).await {
            Ok(ws) => ws,
            Err(_) => try_ws(&b).await.expect("six slots of cap 3 x 2"),
        };
        held.push(ws);
    }
    assert!(
        try_ws(&a).await.is_err() && try_ws(&b).await.is_err(),
        "full on the sum"
    );
    wait_until("both see all six", || async {
        let total = |s: Value| s["totals"]["cluster_live"].as_u64();
        total(state(&a).await) == Some(6) && total(state(&b).await) == Some(6)
    })
    .await;
    // The pool drains one backend: the edge beside it stops routing there too.
    use tidegate_proxy::target::ScaleTarget;
    a.handles.pool.as_ref().unwrap().set_desired(2, 1);
    wait_until(
        "the drain mark reaches the edge beside the pool",
        || async {
            let s = state(&b).await;
            let bs = s["backends"].as_array().unwrap().clone();
            bs.iter().filter(|b| b["state"] == "draining").count() == 1
        },
    )
    .await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_beyond_an_edges_share_wait_for_a_peers_spare_share_not_for_a_sync() {
    // Two edges syncing every 3 s share one backend of cap 4 + 4; upgrades wait up to 1 s. A
    // burst of 8 at one edge: 4 fit its share, 4 wait for the other edge's spare share, which
    // comes within a round trip (syncs brought forward), not at the next sync (up to 3 s on
    // each side, past the queue timeout).
    let b1 = Backend::start().await;
    let backends = [&b1];
    let slow = |peers: &[SocketAddr]| {
        let mut c = config(&backends, peers)
            .replace("queue_timeout: 0s", "queue_timeout: 1s")
            .replace("peer_timeout: 5s", "peer_timeout: 10s");
        c.push_str("  sync_interval: 3s\n");
        c.replace(
            "max_connections_per_backend: 4",
            "max_connections_per_backend: 8",
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let a = EdgeProcess::start(dir.path(), "a", &slow(&[])).await;
    let b = EdgeProcess::start(dir.path(), "b", &slow(&[a.admin])).await;
    let all = [a.admin, b.admin];
    for e in [&a, &b] {
        e.rewrite(&slow(&all));
    }
    let edges = [&a, &b];
    wait_until("two edges, the cap split between them", || async {
        let s = states(&edges).await;
        let share = |s: &Value| s["backends"][0]["share"].as_u64().unwrap_or(0);
        s.iter().all(|s| share(s) >= 3) && shares(&s) == vec![8]
    })
    .await;
    let before = early_syncs(&a).await + early_syncs(&b).await;
    let (held, refused) = burst(&a, 8).await;
    assert_eq!(
        (held.len(), refused),
        (8, 0),
        "every upgrade got a slot within the queue timeout"
    );
    assert_eq!(b1.stats.peak(), 8);
    let after = early_syncs(&a).await + early_syncs(&b).await;
    assert!(
        after > before,
        "syncs were brought forward: {before} → {after}"
    );
    drop(held);
}

async fn early_syncs(edge: &EdgeProcess) -> f64 {
    let m = edge.metrics().await;
    crate::support::sample(&m, "tidegate_peer_early_syncs_total").unwrap_or(0.0)
}
