//! No smuggling: nothing a client sends after an upgrade head reaches the backend before its
//! `101` (and never, if it refuses); heads whose framing or line endings could be read two ways
//! are refused with 400 on both paths — first request or later on a kept-alive connection —
//! each counted under its own reason.

use std::time::Duration;

use crate::support::recording::{Recording, Step};
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SMUGGLED: &str = "GET /admin HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_refused_upgrade_never_reach_the_backend() {
    let backend = Recording::start(vec![
        Step::Send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!"),
        Step::Record,
    ])
    .await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let mut c = config(&[backend.addr], 10);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        // The upgrade and a second request in one write, as one packet.
        let both = format!("{}{SMUGGLED}", upgrade_request("Connection: Upgrade\r\n"));
        let (mut s, head) = open_raw(proxy.traffic_addr, both.as_bytes()).await;
        assert!(
            head.starts_with("HTTP/1.1 403"),
            "fast path {fast_path}: {head}"
        );
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
        // The proxy has closed the client: whatever it was going to send the backend for this
        // connection, it has sent (pingora may keep the backend connection in its pool).
        let conn = backend.conn(i).await;
        assert_eq!(conn.received_before_answer(), Some(conn.bytes().len()));
        let seen = String::from_utf8_lossy(&conn.bytes()).into_owned();
        assert!(
            !seen.contains("/admin"),
            "fast path {fast_path}: smuggled through: {seen}"
        );
        assert_eq!(backend.conns().len(), i + 1, "no second backend request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_an_upgrade_head_are_held_until_the_101() {
    let backend = Recording::start(vec![Step::Hold, Step::Upgrade, Step::Record]).await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let mut c = config(&[backend.addr], 10);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let early = "early bytes";
        let both = format!("{}{early}", upgrade_request("Connection: Upgrade\r\n"));
        let mut s = TcpStream::connect(proxy.traffic_addr).await.unwrap();
        s.write_all(both.as_bytes()).await.unwrap();
        let conn = backend.conn(i).await;
        // The backend holds its answer: the head is all it has.
        assert!(conn.after_head().is_empty(), "fast path {fast_path}");
        backend.release();
        let head = read_head(&mut s).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "fast path {fast_path}: {head}"
        );
        wait_until("the held bytes arrive after the 101", || async {
            conn.after_head() == early.as_bytes()
        })
        .await;
        assert_eq!(
            conn.received_before_answer(),
            Some(conn.bytes().len() - early.len())
        );
        // The tunnel carries on both ways.
        s.write_all(b" and more").await.unwrap();
        wait_until("later bytes follow", || async {
            conn.after_head() == b"early bytes and more"
        })
        .await;
    }
}

/// Each malformed shape, the reason it is counted under, and whether pingora's own parser
/// refuses it first on a kept-alive connection (answered 400 before any hook of tidegate's
/// runs, so not counted there).
const REFUSED: [(&str, &str, bool); 7] = [
    (
        "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\nbody",
        "upgrade_with_body",
        false,
    ),
    (
        "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "upgrade_with_body",
        false,
    ),
    (
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad_framing",
        false,
    ),
    (
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nbody",
        "bad_framing",
        true,
    ),
    ("GET / HTTP/1.1\nHost: t\n\n", "bare_lf", false),
    (
        "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
        "missing_host",
        false,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "duplicate_host",
        true,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_heads_are_refused_with_400_first_or_kept_alive_on_both_paths() {
    let backend = Backend::start().await;
    for fast_path in [true, false] {
        let mut c = config(&[backend.addr], 10);
        c.websocket_fast_path = fast_path;
        c.request_header_timeout = Duration::from_secs(5);
        let proxy = start_proxy(c);
        let mut want = std::collections::HashMap::<&str, f64>::new();
        for (request, reason, pingora_first) in REFUSED {
            let case = format!("fast path {fast_path}: {request:?}");
            let first = raw(proxy.traffic_addr, request.as_bytes()).await;
            assert!(first.starts_with("HTTP/1.1 400"), "{case}: {first}");
            // The same after a plain request on the same connection (pingora's path).
            let mut s = kept_alive(proxy.traffic_addr).await;
            s.write_all(request.as_bytes()).await.unwrap();
            let second = read_head(&mut s).await;
            assert!(
                second.starts_with("HTTP/1.1 400"),
                "{case}: kept alive: {second}"
            );
            *want.entry(reason).or_default() += if pingora_first { 1.0 } else { 2.0 };
        }
        let m = metrics(&proxy).await;
        for (reason, n) in want {
            let series = format!("tidegate_bad_requests_total{{reason=\"{reason}\"}}");
            assert_eq!(
                sample(&m, &series),
                Some(n),
                "fast path {fast_path}: {series}"
            );
        }
        let s = state(&proxy).await;
        assert_eq!(
            (
                s["totals"]["live"].as_u64(),
                s["totals"]["pending"].as_u64()
            ),
            (Some(0), Some(0))
        );
        assert_eq!(
            backend.stats.accepted(),
            0,
            "nothing refused reached the backend as a WebSocket"
        );
    }
}
