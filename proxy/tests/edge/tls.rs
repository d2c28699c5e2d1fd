//! TLS termination with real clients verifying against a test CA: `wss://` on the fast path and
//! `https://` through pingora, a plain and a TLS listener in one process, SNI selection,
//! rotation from a Secret volume under open WebSockets, and bad input (plain HTTP, garbage, a
//! stalled or refused handshake) closed and counted without touching a backend; the drain's
//! 1001 closes reaching `wss://` WebSockets as they reach plain ones, and a `wss://` client
//! that leaves the queue seen leaving.

use std::time::Duration;

use tidegate_proxy::config::SniCertificate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::frames;
use crate::support::tls::*;
use crate::support::*;

fn metric(m: &str, series: &str) -> f64 {
    sample(m, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_are_terminated_next_to_a_plain_listener() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let echo = Backend::start().await;
    let mut c = tls_config(&[echo.addr], &volume);
    c.tls.as_mut().unwrap().listen = Some(loopback0());
    let proxy = start_proxy(c);
    let tls_addr = proxy.tls_addr.unwrap();
    assert_ne!(tls_addr, proxy.traffic_addr, "a second listener for TLS");

    // wss:// on the fast path, verified against the CA, next to a plain ws:// on `listen`.
    let (mut secure, _) = wss(tls_addr, HOST, ca.client_config()).await;
    let mut plain = ws(&proxy).await;
    echo_once(&mut secure, "over tls").await;
    echo_once(&mut plain, "in the clear").await;
    let big = "x".repeat(200_000);
    echo_once(&mut secure, &big).await;
    assert_counts_match(&proxy, &[&echo]).await;

    // https:// through pingora's plain-HTTP path.
    let health = exchange(
        tls_addr,
        &ca,
        "GET /healthz HTTP/1.1\r\nHost: tidegate.test\r\nConnection: close\r\n\r\n",
        "\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let m = metrics(&proxy).await;
    assert!(
        metric(&m, "tidegate_tls_handshakes_total{version=\"tls1_3\"}") >= 2.0,
        "{m}"
    );
    drop((secure, plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate_with_a_default() {
    let ca = TestCa::new();
    let (default, a, w) = (
        ca.leaf(&[HOST, "other.test"]),
        ca.leaf(&["a.test"]),
        ca.leaf(&["*.w.test"]),
    );
    let volumes = [&default, &a, &w].map(SecretVolume::new);
    let echo = Backend::start().await;
    let mut c = tls_config(&[echo.addr], &volumes[0]);
    let entry = |v: &SecretVolume, hosts: &[&str]| SniCertificate {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        cert_file: v.cert(),
        key_file: v.key(),
        name: None,
    };
    c.tls.as_mut().unwrap().certificates = vec![
        entry(&volumes[1], &["a.test"]),
        entry(&volumes[2], &["*.w.test"]),
    ];
    let proxy = start_proxy(c);
    let addr = proxy.tls_addr.unwrap();
    assert_eq!(addr, proxy.traffic_addr, "listen itself speaks TLS");
    for (name, want) in [
        ("a.test", &a),
        ("x.w.test", &w),
        ("other.test", &default),
        (HOST, &default),
    ] {
        let (mut socket, served_leaf) = wss(addr, name, ca.client_config()).await;
        assert_eq!(served_leaf, want.der, "certificate served for {name}");
        echo_once(&mut socket, name).await;
    }
    let m = metrics(&proxy).await;
    for name in ["default", "a.test", "*.w.test"] {
        let series =
            format!("tidegate_tls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}");
        assert!(metric(&m, &series) > 1.7e9, "{series}:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_open_websockets_and_serves_the_new_certificate_to_new_ones() {
    let ca = TestCa::new();
    let first = ca.leaf(&[HOST]);
    let mut volume = SecretVolume::new(&first);
    let echo = Backend::start().await;
    let proxy = start_proxy(tls_config(&[echo.addr], &volume));
    let addr = proxy.tls_addr.unwrap();
    let reloads = |result: &'static str| {
        let proxy = &proxy;
        async move {
            let m = metrics(proxy).await;
            metric(
                &m,
                &format!("tidegate_tls_reloads_total{{result=\"{result}\"}}"),
            )
        }
    };

    let (mut old, old_leaf) = wss(addr, HOST, ca.client_config()).await;
    assert_eq!(old_leaf, first.der);

    let second = ca.leaf(&[HOST]);
    volume.update(&second.chain_pem, &second.key_pem);
    wait_until("the new pair is loaded", || async {
        reloads("ok").await == 1.0
    })
    .await;
    let (mut new, new_leaf) = wss(addr, HOST, ca.client_config()).await;
    assert_eq!(
        new_leaf, second.der,
        "new handshakes get the new certificate"
    );
    echo_once(&mut old, "still here").await;
    echo_once(&mut new, "new one").await;

    // A broken update (a certificate with somebody else's key) keeps the second pair.
    let third = ca.leaf(&[HOST]);
    volume.update(&third.chain_pem, &first.key_pem);
    wait_until("the bad pair is refused", || async {
        reloads("error").await == 1.0
    })
    .await;
    let (mut newer, newer_leaf) = wss(addr, HOST, ca.client_config()).await;
    assert_eq!(
        newer_leaf, second.der,
        "a refused pair leaves the one in force"
    );
    for (ws, text) in [(&mut old, "a"), (&mut new, "b"), (&mut newer, "c")] {
        echo_once(ws, text).await;
    }
    assert_eq!(reloads("ok").await, 1.0);
    assert_eq!(echo.stats.open(), 3);
    assert_counts_match(&proxy, &[&echo]).await;
    let m = metrics(&proxy).await;
    assert_eq!(upgrades_total(&m, &[echo.addr], "ok"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_closed_and_counted_without_touching_a_backend() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let echo = Backend::start().await;
    let mut c = tls_config(&[echo.addr], &volume);
    c.request_header_timeout = Duration::from_millis(500);
    let proxy = start_proxy(c);
    let addr = proxy.tls_addr.unwrap();

    let plain = get(addr, "/").await;
    assert!(
        plain.starts_with("HTTP/1.1 400 ") && plain.contains("speaks TLS"),
        "{plain}"
    );
    let garbage = raw(addr, b"\x00\x01\x02 hello\r\n\r\n").await;
    assert_eq!(garbage, "", "closed without a word");

    // A stalled handshake: the start of a record, then silence, closed at the deadline.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stalled.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // A client that trusts another CA refuses the certificate.
    let stranger = TestCa::new();
    assert!(connect(addr, HOST, stranger.client_config()).await.is_err());
    // A client offering only h2.
    let mut h2_only = (*ca.client_config()).clone();
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    assert!(
        connect(addr, HOST, std::sync::Arc::new(h2_only))
            .await
            .is_err()
    );

    let m = metrics(&proxy).await;
    for reason in [
        "plaintext_http",
        "not_tls",
        "timeout",
        "certificate_rejected",
        "no_application_protocol",
    ] {
        wait_until(&format!("{reason} counted"), || async {
            let m = metrics(&proxy).await;
            metric(
                &m,
                &format!("tidegate_tls_handshake_errors_total{{reason=\"{reason}\"}}"),
            ) == 1.0
        })
        .await;
    }
    // None of it reached a backend or a count.
    assert_eq!(echo.stats.accepted(), 0);
    let backend = echo.addr.to_string();
    for gauge in [
        "tidegate_backend_connections",
        "tidegate_backend_pending_connections",
    ] {
        assert_eq!(
            metric(&m, &format!("{gauge}{{backend=\"{backend}\"}}")),
            0.0
        );
    }
    assert!(!m.contains("tidegate_upgrades_total{"), "{m}");
    assert!(!m.contains("tidegate_bad_requests_total{"), "{m}");

    // And the port still serves a good client.
    let (mut ok, _) = wss(addr, HOST, ca.client_config()).await;
    echo_once(&mut ok, "fine").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_closes_wss_websockets_with_1001_at_a_frame_boundary_like_plain_ones() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let echo = Backend::start().await;
    let mut c = tls_config(&[echo.addr], &volume);
    c.tls.as_mut().unwrap().listen = Some(loopback0());
    (c.grace_period, c.websocket_close_timeout) = (Duration::from_secs(6), Duration::from_secs(5));
    let proxy = start_proxy(c);
    let registry = proxy.handles.admin.registry.clone();
    let tls_addr = proxy.tls_addr.unwrap();
    // Over TLS, frames by hand: the first 1 KiB of a 64 KiB frame now, the rest once draining.
    // Opened first, so the drain asks it first (at the grace's start; the others follow at
    // grace / 2 / 3 intervals).
    let mut raw = connect(tls_addr, HOST, ca.client_config()).await.unwrap();
    frames::upgrade(&mut raw).await;
    let frame = frames::binary_frame(64 * 1024);
    let cut = 14 + 1024;
    frames::write_through(&mut raw, &frame[..cut], &echo).await;
    let (mut secure, _) = wss(tls_addr, HOST, ca.client_config()).await;
    let mut plain = ws(&proxy).await;
    echo_once(&mut secure, "over tls").await;
    echo_once(&mut plain, "in the clear").await;

    let closes = [
        tokio::spawn(frames::close_of(secure)),
        tokio::spawn(frames::close_of(plain)),
    ];
    proxy.begin_graceful_stop();
    let shared = std::sync::Arc::clone(&proxy.handles.proxy);
    wait_until("draining", || async { shared.drain.is_draining() }).await;
    let rest = frames::close_after_frame(&mut raw, &frame[cut..])
        .await
        .expect("a clean TLS close (close_notify)");
    assert!(rest.is_empty(), "the big frame's echo came after the close");
    for close in closes {
        let (code, _) = close.await.unwrap();
        assert_eq!(code, Some(CloseCode::Away), "wss:// and ws:// get 1001");
    }

    wait_until("the backend saw every close", || async {
        echo.stats.open() == 0
    })
    .await;
    assert_eq!(echo.stats.close_codes(), vec![Some(1001); 3], "masked 1001");
    let started = tokio::time::Instant::now();
    tokio::task::spawn_blocking(move || proxy.stop_gracefully())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "over without waiting for the grace's end"
    );
    let m = tidegate_proxy::metrics::render(&registry);
    let closes = "tidegate_websocket_closes_total{cause=\"shutdown\"}";
    assert_eq!(metric(&m, closes), 3.0, "{m}");
    let ends = "tidegate_connection_duration_seconds_count{end=\"proxy_closed\"}";
    assert_eq!(metric(&m, ends), 3.0, "{m}");
    assert_eq!(metric(&m, "tidegate_shutdown_cut_connections_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_that_leaves_the_queue_is_seen_leaving() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    for fast_path in [true, false] {
        let backend = crate::support::recording::Recording::upgrading().await;
        let mut c = tls_config(&[backend.addr], &volume);
        c.max_connections_per_backend = 1;
        c.queue_timeout = Duration::from_secs(15);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        let addr = proxy.tls_addr.unwrap();
        let (first, _) = wss(addr, HOST, ca.client_config()).await;
        // Closed without a close_notify, as a client that goes away does.
        let leaving = connect(addr, HOST, ca.client_config()).await.unwrap();
        let left = leave_queue(&proxy, leaving).await;
        assert_eq!(left, 1.0, "fast path {fast_path}");
        drop(first);
        assert_eq!(backend.conns().len(), 1, "fast path {fast_path}");
    }
}
