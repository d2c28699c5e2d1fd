//! Every WebSocket upgrade is counted: any HTTP/1.1 request with `Upgrade: websocket` takes a
//! slot under the cap whatever its `Connection` header says, on the fast path and on pingora's
//! path, first request or later on a kept-alive connection; and a `101` never becomes a tunnel
//! for a request that holds no slot.

use std::time::Duration;

use crate::support::recording::{Recording, Step};
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn upgrade_on(mut s: TcpStream, connection: &str) -> (TcpStream, String) {
    let request = upgrade_request(connection);
    s.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_take_a_slot_whatever_their_connection_header_on_both_paths() {
    let backend = Backend::start().await;
    for fast_path in [true, false] {
        let mut c = config(&[backend.addr], 2);
        c.queue_timeout = Duration::ZERO;
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let addr = proxy.traffic_addr;
        for connection in [
            "Connection: keep-alive\r\n",
            "Connection: close\r\n",
            "",
            "Connection: Upgrade\r\n",
        ] {
            for reused in [false, true] {
                let case = format!("fast path {fast_path}, reused {reused}, {connection:?}");
                let mut open = Vec::new();
                for i in 0..3 {
                    let s = if reused {
                        kept_alive(addr).await
                    } else {
                        TcpStream::connect(addr).await.unwrap()
                    };
                    let (s, head) = upgrade_on(s, connection).await;
                    let want = if i < 2 {
                        "HTTP/1.1 101"
                    } else {
                        "HTTP/1.1 503"
                    };
                    assert!(head.starts_with(want), "{case}: upgrade {i}: {head}");
                    open.push(s);
                }
                let s = state(&proxy).await;
                assert_eq!(s["totals"]["live"], 2, "{case}: {s}");
                assert_counts_match(&proxy, &[&backend]).await;
                drop(open);
                wait_until(&format!("{case}: released"), || async {
                    let s = state(&proxy).await;
                    s["totals"]["live"] == 0 && s["totals"]["pending"] == 0
                })
                .await;
            }
        }
        tokio::task::spawn_blocking(move || proxy.stop_gracefully())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_a_request_without_a_slot_never_becomes_a_tunnel() {
    // A backend that answers 101 to anything, here to an `Upgrade: h2c` request (which takes no
    // WebSocket slot).
    let backend = Recording::start(vec![
        Step::Send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        ),
        Step::Record,
    ])
    .await;
    for fast_path in [true, false] {
        let mut c = config(&[backend.addr], 2);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let request = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        let (mut s, head) = open_raw(proxy.traffic_addr, request.as_bytes()).await;
        assert!(
            !head.starts_with("HTTP/1.1 101"),
            "fast path {fast_path}: {head}"
        );
        // Nothing the client sends now may reach the backend as tunnel bytes.
        let _ = s.write_all(b"tunnelled?").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
        for conn in backend.conns() {
            assert!(
                !String::from_utf8_lossy(&conn.bytes()).contains("tunnelled?"),
                "fast path {fast_path}: the client's bytes reached the backend"
            );
        }
        assert_eq!(state(&proxy).await["totals"]["live"], 0);
        tokio::task::spawn_blocking(move || proxy.stop_gracefully())
            .await
            .unwrap();
    }
}
