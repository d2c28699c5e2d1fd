//! The PROXY protocol: a header in front of the client's bytes names the client (for
//! forwarding headers and the trust check), a missing or malformed one closes the connection
//! and is counted, and backends can be sent a v2 header of their own — on both paths.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::recording::{Recording, Step};
use crate::support::*;
use tidegate_proxy::config::{ProxyProtocol, SendProxyProtocol};
use tidegate_proxy::dataplane::proxy_protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2(src: &str, dst: &str) -> Vec<u8> {
    let mut out = Vec::new();
    proxy_protocol::write_v2(sa(src), sa(dst), &mut out);
    out
}

async fn plain_backend() -> Recording {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    Recording::start(vec![Step::Send(ok), Step::Record]).await
}

/// Sends `prefix` then `request` on a new connection; returns the answer's head.
async fn send(addr: SocketAddr, prefix: &[u8], request: &str) -> (TcpStream, String) {
    let bytes = [prefix, request.as_bytes()].concat();
    open_raw(addr, &bytes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_header_source_is_the_client_on_both_paths() {
    let ws_backend = Recording::upgrading().await;
    let http_backend = plain_backend().await;
    let mut c = config(&[ws_backend.addr], 10);
    c.proxy_protocol = ProxyProtocol::Any;
    c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let proxy = start_proxy(c);
    let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec();
    let headers: [(Vec<u8>, &str); 4] = [
        (v1, "192.0.2.1"),
        (v2("[2001:db8::7]:4000", "[2001:db8::1]:443"), "2001:db8::7"),
        // A trusted proxy behind the balancer: its chain is kept and it is appended.
        (v2("10.1.2.3:4000", "10.0.0.1:443"), "6.6.6.6, 10.1.2.3"),
        // LOCAL (the balancer's own check): the TCP peer is the client.
        (
            [&proxy_protocol::V2_SIGNATURE[..], &[0x20, 0, 0, 0]].concat(),
            "127.0.0.1",
        ),
    ];
    for (i, (header, want)) in headers.iter().enumerate() {
        let request = upgrade_request("Connection: Upgrade\r\nX-Forwarded-For: 6.6.6.6\r\n");
        let (_s, head) = send(proxy.traffic_addr, header, &request).await;
        assert!(head.starts_with("HTTP/1.1 101"), "header {i}: {head}");
        let conn = ws_backend.conn(i).await;
        assert_eq!(conn.header("X-Forwarded-For"), [*want], "header {i}");
    }
    let mut c = config(&[http_backend.addr], 10);
    c.proxy_protocol = ProxyProtocol::V2;
    let proxy = start_proxy(c);
    let header = v2("203.0.113.9:1234", "198.51.100.2:80");
    let (_s, head) = send(
        proxy.traffic_addr,
        &header,
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let conn = http_backend.conn(0).await;
    assert_eq!(conn.header("X-Forwarded-For"), ["203.0.113.9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_malformed_or_slow_proxy_header_closes_and_is_counted() {
    let backend = Backend::start().await;
    let mut c = config(&[backend.addr], 10);
    c.proxy_protocol = ProxyProtocol::V2;
    c.request_header_timeout = Duration::from_millis(300);
    let proxy = start_proxy(c);
    let truncated = &v2("192.0.2.1:1", "192.0.2.2:2")[..20];
    let refused: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
        truncated,
    ];
    for bytes in refused {
        let mut s = TcpStream::connect(proxy.traffic_addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection must be closed");
        assert!(answer.is_empty(), "no answer to a balancer: {answer:?}");
    }
    // A connection that sends nothing is not a PROXY error.
    drop(TcpStream::connect(proxy.traffic_addr).await.unwrap());
    wait_until("every refusal counted", || async {
        let m = metrics(&proxy).await;
        sample(&m, "tidegate_bad_requests_total{reason=\"proxy_protocol\"}") == Some(4.0)
            && sample(&m, "tidegate_bad_requests_total{reason=\"closed_early\"}") == Some(1.0)
    })
    .await;
    assert_eq!(backend.stats.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_can_be_sent_a_v2_header_naming_the_client_on_both_paths() {
    let ws_backend = Recording::upgrading().await;
    let http_backend = plain_backend().await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let mut c = config(&[ws_backend.addr], 10);
        c.websocket_fast_path = fast_path;
        c.backends.send_proxy_protocol = SendProxyProtocol::V2;
        let proxy = start_proxy(c);
        let (s, head) = open_raw(proxy.traffic_addr, upgrade_request("").as_bytes()).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "fast path {fast_path}: {head}"
        );
        let conn = ws_backend.conn(i).await;
        let header = proxy_protocol::parse(&conn.proxy_header(), ProxyProtocol::V2)
            .unwrap()
            .unwrap();
        let (src, dst) = header.addresses.unwrap();
        assert_eq!(src, s.local_addr().unwrap(), "fast path {fast_path}");
        assert_eq!(dst, proxy.traffic_addr, "fast path {fast_path}");
    }
    // pingora's path: each new backend connection opens with the header of its client.
    let mut c = config(&[http_backend.addr], 10);
    c.backends.send_proxy_protocol = SendProxyProtocol::V2;
    c.proxy_protocol = ProxyProtocol::V1;
    let proxy = start_proxy(c);
    let inbound = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    let (_s, head) = send(
        proxy.traffic_addr,
        inbound,
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let conn = http_backend.conn(0).await;
    let header = proxy_protocol::parse(&conn.proxy_header(), ProxyProtocol::V2)
        .unwrap()
        .unwrap();
    assert_eq!(
        header.addresses,
        Some((sa("192.0.2.1:56324"), sa("198.51.100.2:443")))
    );
    // Another client never reuses that connection (its header names someone else).
    let other = b"PROXY TCP4 192.0.2.99 198.51.100.2 1000 443\r\n";
    let (_t, head) = send(
        proxy.traffic_addr,
        other,
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let second = http_backend.conn(1).await;
    let header = proxy_protocol::parse(&second.proxy_header(), ProxyProtocol::V2)
        .unwrap()
        .unwrap();
    assert_eq!(header.addresses.unwrap().0, sa("192.0.2.99:1000"));
}
