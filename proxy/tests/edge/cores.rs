//! Every core: with `threads: N` the traffic address has N listening sockets (`SO_REUSEPORT`,
//! an accept loop each), and the reservation table stays exact when upgrades race for the
//! last slots from several accept loops and workers at once.

use std::time::Duration;

use crate::support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Listening TCP sockets on `port` in this network namespace (`/proc/net/tcp`, state `0A`).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_has_a_listening_socket_of_its_own() {
    let backend = Backend::start().await;
    for threads in [1, 3] {
        let mut c = config(&[backend.addr], 10);
        c.threads = threads;
        let proxy = start_proxy(c);
        assert_eq!(listeners_on(proxy.traffic_addr.port()), threads);
        let mut ws = ws(&proxy).await;
        echo_once(&mut ws, "through one of them").await;
        drop(ws);
        tokio::task::spawn_blocking(move || proxy.stop_gracefully())
            .await
            .unwrap();
    }
}

/// One upgrade on its own connection: its answer's status line.
async fn upgrade(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(upgrade_request("").as_bytes()).await.unwrap();
    let head = tokio::time::timeout(DEADLINE, read_head(&mut s))
        .await
        .expect("an answer");
    (s, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_upgrades_on_two_workers_take_exactly_the_cap() {
    const CAP: u32 = 25;
    const RACERS: usize = 150;
    let backends = [Backend::start().await, Backend::start().await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let mut c = config(&addrs, CAP);
    c.threads = 2;
    c.queue_timeout = Duration::ZERO;
    let proxy = start_proxy(c);
    for round in 0..3 {
        let racers: Vec<_> = (0..RACERS)
            .map(|_| tokio::spawn(upgrade(proxy.traffic_addr)))
            .collect();
        let mut open = Vec::new();
        let mut refused = 0;
        for r in racers {
            let (s, head) = r.await.unwrap();
            if head.starts_with("HTTP/1.1 101") {
                open.push(s);
            } else {
                assert!(head.starts_with("HTTP/1.1 503"), "round {round}: {head}");
                refused += 1;
            }
        }
        let cap = 2 * CAP as usize;
        assert_eq!(open.len(), cap, "round {round}: every slot taken, no more");
        assert_eq!(refused, RACERS - cap, "round {round}");
        let s = state(&proxy).await;
        assert_eq!(s["totals"]["live"], cap, "round {round}: {s}");
        assert_counts_match(&proxy, &[&backends[0], &backends[1]]).await;
        drop(open);
        wait_until(&format!("round {round}: every slot given back"), || async {
            let s = state(&proxy).await;
            let backends_empty = backends.iter().all(|b| b.stats.open() == 0);
            backends_empty && s["totals"]["live"] == 0 && s["totals"]["pending"] == 0
        })
        .await;
        assert_counts_match(&proxy, &[&backends[0], &backends[1]]).await;
    }
    let m = metrics(&proxy).await;
    assert_eq!(upgrades_total(&m, &addrs, "ok"), (3 * 2 * CAP) as f64);
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
}
