//! Exact live counts through every step of a WebSocket's life, against real echo backends.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counts_follow_open_echo_client_close_and_backend_close() {
    let backends = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let proxy = start_proxy(config(&addrs, 4));
    let all: Vec<&Backend> = backends.iter().collect();

    let mut clients = Vec::new();
    for i in 0..9 {
        clients.push(ws(&proxy).await);
        assert_eq!(state(&proxy).await["totals"]["live"], i + 1);
    }
    // Least connections: 9 over 3 backends with cap 4 is 3 each.
    assert!(
        live_by_backend(&proxy)
            .await
            .iter()
            .all(|(_, live)| *live == 3)
    );
    assert_counts_match(&proxy, &all).await;
    for (i, c) in clients.iter_mut().enumerate() {
        echo_once(c, &format!("hello {i}")).await;
    }

    // The client closes half.
    for mut c in clients.drain(..4) {
        c.close(None).await.unwrap();
    }
    wait_until("4 client closes counted", || async {
        state(&proxy).await["totals"]["live"] == 5
    })
    .await;
    assert_counts_match(&proxy, &all).await;

    // Backends close some from their side.
    backends[0].stats.close_connections(1);
    backends[1].stats.close_connections(1);
    wait_until("2 backend closes counted", || async {
        state(&proxy).await["totals"]["live"] == 3
    })
    .await;
    assert_counts_match(&proxy, &all).await;
    let s = state(&proxy).await;
    assert_eq!(s["totals"]["pending"], 0);
    assert_eq!(s["backends"][0]["capacity"], 4);
    assert_eq!(s["backends"][0]["state"], "ready");

    let m = metrics(&proxy).await;
    let ok = upgrades_total(&m, &addrs, "ok");
    assert_eq!(ok, 9.0);
    drop(clients);
    wait_until("all closed", || async {
        state(&proxy).await["totals"]["live"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cap_holds_the_upgrade_until_a_slot_frees() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 1);
    c.queue_timeout = Duration::from_secs(15);
    let proxy = start_proxy(c);

    let first = ws(&proxy).await;
    let addr = proxy.traffic_addr;
    let second = tokio::spawn(async move {
        tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .map(|(ws, r)| (ws, r.status()))
    });
    wait_until("second upgrade queued", || async {
        state(&proxy).await["totals"]["waiting"] == 1
    })
    .await;
    assert_eq!(
        state(&proxy).await["totals"]["live"],
        1,
        "the cap must hold while queued"
    );
    drop(first);
    let (mut second, status) = second.await.unwrap().unwrap();
    assert_eq!(status, 101);
    echo_once(&mut second, "admitted").await;
    assert_counts_match(&proxy, &[&backend]).await;
    let m = metrics(&proxy).await;
    assert_eq!(sample(&m, "tidegate_queue_wait_seconds_count"), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_answers_503_with_retry_after() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 1);
    c.queue_timeout = Duration::from_millis(200);
    c.retry_after = Duration::from_secs(7);
    let proxy = start_proxy(c);
    let _first = ws(&proxy).await;

    let upgrade = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let answer = raw(proxy.traffic_addr, upgrade.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 7\r\n"), "{answer}");
    let m = metrics(&proxy).await;
    assert_eq!(
        sample(
            &m,
            "tidegate_rejected_connections_total{reason=\"queue_timeout\"}"
        ),
        Some(1.0)
    );
    assert_eq!(state(&proxy).await["totals"]["rejected"], 1);
    assert_counts_match(&proxy, &[&backend]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_zero_refuses_at_once() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 1);
    c.queue_timeout = Duration::ZERO;
    let proxy = start_proxy(c);
    let _first = ws(&proxy).await;
    let err = try_ws(&proxy).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    let m = metrics(&proxy).await;
    assert_eq!(
        sample(&m, "tidegate_rejected_connections_total{reason=\"full\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_is_closed_by_the_configured_idle_timeout_and_released() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 10);
    c.websocket_idle_timeout = Duration::from_millis(500);
    let proxy = start_proxy(c);
    let started = std::time::Instant::now();
    let _idle = ws(&proxy).await;
    wait_until("idle websocket closed", || async {
        state(&proxy).await["totals"]["live"] == 0
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    let m = metrics(&proxy).await;
    assert_eq!(
        sample(
            &m,
            "tidegate_connection_duration_seconds_count{end=\"idle_timeout\"}"
        ),
        Some(1.0)
    );
    assert_counts_match(&proxy, &[&backend]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_proxy_releases_every_count() {
    let backend = Backend::start().await;
    let proxy = start_proxy(config(&[backend.addr], 10));
    let shared = std::sync::Arc::clone(&proxy.handles.proxy);
    let clients = [ws(&proxy).await, ws(&proxy).await, ws(&proxy).await];
    assert_eq!(
        shared
            .table
            .load_snapshot(std::time::Instant::now())
            .total_live(),
        3
    );
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
    assert_eq!(
        shared
            .table
            .load_snapshot(std::time::Instant::now())
            .total_live(),
        0
    );
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_return_to_zero_after_thousands_of_mixed_endings() {
    // 32 clients × 40 connections over 20 slots (so many wait in the queue), each ending one
    // of seven ways, three of them upgrades a WebSocket library would not send.
    churn(true, 10, 32, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_return_to_zero_after_mixed_endings_of_every_shape_on_pingoras_path() {
    churn(false, 5, 16, 12).await;
}

/// `clients` clients each open `each` upgrades one after another through a proxy with a cap of
/// `cap` on each of two backends, ending them in every way of [`one_ending`]; then every count
/// must be back to zero and every upgrade have been answered 101.
async fn churn(fast_path: bool, cap: u32, clients: u32, each: u32) {
    let backends = [Backend::start().await, Backend::start().await];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let mut c = config(&addrs, cap);
    c.queue_timeout = Duration::from_secs(15);
    c.websocket_fast_path = fast_path;
    let proxy = std::sync::Arc::new(start_proxy(c));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let proxy = std::sync::Arc::clone(&proxy);
            tokio::spawn(async move {
                for i in 0..each {
                    one_ending(&proxy, client + i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    wait_until("every count back to zero", || async {
        let s = state(&proxy).await;
        s["totals"]["live"] == 0 && s["totals"]["pending"] == 0
    })
    .await;
    let m = metrics(&proxy).await;
    let ok = upgrades_total(&m, &addrs, "ok");
    assert_eq!(ok, f64::from(clients * each), "fast path {fast_path}");
    assert_counts_match(&proxy, &[&backends[0], &backends[1]]).await;
}

/// One upgrade, ended one of seven ways by `n`: a library's handshake closed, dropped, echoed
/// and dropped, echoed and closed; or raw upgrades whose `Connection` is `keep-alive`,
/// `close` (with bytes pipelined behind the head) or absent after a plain request on the same
/// connection — each answered 101 and then dropped.
async fn one_ending(proxy: &tidegate_proxy::server::Running, n: u32) {
    use tokio::io::AsyncWriteExt;
    let raw_upgrade = |s: tokio::net::TcpStream, headers: &'static str, tail: &'static str| async move {
        let mut s = s;
        let request = upgrade_request(headers) + tail;
        s.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{headers:?}: {head}");
    };
    let addr = proxy.traffic_addr;
    let connect = || async move { tokio::net::TcpStream::connect(addr).await.unwrap() };
    match n % 7 {
        4 => raw_upgrade(connect().await, "Connection: keep-alive\r\n", "").await,
        5 => raw_upgrade(connect().await, "Connection: close\r\n", "junk").await,
        6 => raw_upgrade(kept_alive(addr).await, "", "").await,
        kind => {
            let mut ws = ws(proxy).await;
            match kind {
                0 => ws.close(None).await.unwrap(),
                1 => drop(ws),
                2 => {
                    echo_once(&mut ws, "x").await;
                    drop(ws);
                }
                _ => {
                    echo_once(&mut ws, "y").await;
                    ws.close(None).await.unwrap();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_for_the_status_page_is_sampled_without_a_scaler() {
    let backend = Backend::start().await;
    let proxy = start_proxy(config(&[backend.addr], 10));
    let _clients = [ws(&proxy).await, ws(&proxy).await];
    wait_until("a sample with both connections", || async {
        let body = get(proxy.admin_addr, "/api/v1/history").await;
        let json = body.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let history: serde_json::Value = serde_json::from_str(json).unwrap();
        history.as_array().unwrap().last().is_some_and(|s| {
            s["live"] == 2 && s["capacity"] == 10 && s["ready"] == 1 && s["desired"].is_null()
        })
    })
    .await;
    assert!(
        state(&proxy).await.get("scaler").is_none(),
        "no scaler object without a scaler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_the_queue_takes_no_slot_and_makes_no_handshake() {
    for fast_path in [true, false] {
        let backend = crate::support::recording::Recording::upgrading().await;
        let mut c = config(&[backend.addr], 1);
        c.queue_timeout = Duration::from_secs(15);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let first = ws(&proxy).await;
        let leaving = tokio::net::TcpStream::connect(proxy.traffic_addr)
            .await
            .unwrap();
        let left = leave_queue(&proxy, leaving).await;
        assert_eq!(left, 1.0, "fast path {fast_path}");
        // The freed slot goes to the next client that is there, not to the one that left.
        drop(first);
        let mut third = ws(&proxy).await;
        echo_once(&mut third, "mine").await;
        assert_eq!(
            backend.conns().len(),
            2,
            "fast path {fast_path}: no handshake for the client that left"
        );
        assert_eq!(state(&proxy).await["totals"]["live"], 1);
    }
}

/// pingora's path with two workers: every upgrade's first message is echoed. pingora-proxy 0.9.1
/// could take the empty request body's end after the 101 and cut the tunnel right after it (a
/// reset on the first message, about one run in two of this test); see vendor/pingora-proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_first_message_is_echoed_on_pingoras_path_with_two_workers() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 100);
    c.websocket_fast_path = false;
    c.threads = 2;
    let proxy = std::sync::Arc::new(start_proxy(c));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let proxy = std::sync::Arc::clone(&proxy);
            tokio::spawn(async move {
                for _ in 0..25 {
                    let mut ws = ws(&proxy).await;
                    echo_once(&mut ws, "first").await;
                    ws.close(None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
