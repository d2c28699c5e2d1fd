//! TLS behind a load balancer and what backends are told over it: a PROXY header (v1 or v2)
//! in front of the ClientHello — in the same write, so that the proxy's read of the header
//! takes part or all of the ClientHello with it, or before it — names the client; a TLS
//! listener expecting one closes a connection without it; and forwarding headers over TLS
//! follow `trusted_proxies` as over TCP, with `X-Forwarded-Proto: https` — on both paths.

use std::net::SocketAddr;

use tidegate_proxy::config::{ProxyProtocol, SendProxyProtocol};
use tidegate_proxy::dataplane::proxy_protocol;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::recording::{Conn, Recording, Step};
use crate::support::tls::*;
use crate::support::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A PROXY v2 header for `src` → `dst`, with a NOOP TLV of `padding` bytes.
fn v2(src: &str, dst: &str, padding: u16) -> Vec<u8> {
    let mut out = Vec::new();
    proxy_protocol::write_v2(sa(src), sa(dst), &mut out);
    if padding > 0 {
        let len = u16::from_be_bytes([out[14], out[15]]) + 3 + padding;
        out[14..16].copy_from_slice(&len.to_be_bytes());
        out.push(0x04); // PP2_TYPE_NOOP
        out.extend_from_slice(&padding.to_be_bytes());
        out.resize(out.len() + usize::from(padding), 0);
    }
    out
}

async fn plain_backend() -> Recording {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    Recording::start(vec![Step::Send(ok), Step::Record]).await
}

/// A verified TLS connection to `addr` that starts with `header`: sent in the ClientHello's
/// write (`together`) or written on its own before the handshake.
async fn tls_behind(
    addr: SocketAddr,
    ca: &TestCa,
    header: Vec<u8>,
    together: bool,
) -> TlsStream<Behind> {
    let io = if together {
        Behind::connect(addr, header).await
    } else {
        Behind::after(addr, &header).await
    };
    connect_over(io, HOST, ca.client_config()).await.unwrap()
}

/// A real WebSocket client's handshake over `stream`, with `headers` added; one echo.
async fn websocket_over<S>(stream: S, headers: &[(&'static str, &str)])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = format!("wss://{HOST}/chat").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (mut ws, resp) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("upgrade timed out")
            .unwrap();
    assert_eq!(resp.status(), 101);
    echo_once(&mut ws, "over tls").await;
}

/// The addresses in the PROXY v2 header a backend connection opened with.
fn sent_header(conn: &Conn) -> Option<(SocketAddr, SocketAddr)> {
    let header = conn.proxy_header();
    let parsed = proxy_protocol::parse(&header, ProxyProtocol::V2).unwrap();
    parsed.unwrap().addresses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_before_the_client_hello_names_the_client_on_both_paths() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let ws_backend = Recording::upgrading().await;
    let mut c = tls_config(&[ws_backend.addr], &volume);
    c.proxy_protocol = ProxyProtocol::Any;
    c.backends.send_proxy_protocol = SendProxyProtocol::V2;
    let proxy = start_proxy(c);
    let addr = proxy.tls_addr.unwrap();
    let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec();
    let cases = [
        // The header's read takes the start of the ClientHello.
        (
            "v1, one write",
            v1,
            true,
            "192.0.2.1:56324",
            "198.51.100.2:443",
        ),
        // A header longer than the first read: the second read takes the whole ClientHello.
        (
            "v2 with a 1 KiB TLV, one write",
            v2("[2001:db8::7]:4000", "[2001:db8::1]:443", 1024),
            true,
            "[2001:db8::7]:4000",
            "[2001:db8::1]:443",
        ),
        (
            "v2, then the handshake",
            v2("203.0.113.5:7000", "198.51.100.2:443", 0),
            false,
            "203.0.113.5:7000",
            "198.51.100.2:443",
        ),
    ];
    for (i, (case, header, together, src, dst)) in cases.into_iter().enumerate() {
        let tls = tls_behind(addr, &ca, header, together).await;
        websocket_over(tls, &[]).await;
        let conn = ws_backend.conn(i).await;
        let client = sa(src).ip().to_string();
        assert_eq!(conn.header("X-Forwarded-For"), [client], "{case}");
        assert_eq!(conn.header("X-Forwarded-Proto"), ["https"], "{case}");
        assert_eq!(sent_header(&conn), Some((sa(src), sa(dst))), "{case}");
    }

    // pingora's path over TLS: the header's addresses are the ones pingora reports.
    let http_backend = plain_backend().await;
    let mut c = tls_config(&[http_backend.addr], &volume);
    c.proxy_protocol = ProxyProtocol::V2;
    c.backends.send_proxy_protocol = SendProxyProtocol::V2;
    let proxy = start_proxy(c);
    let header = v2("203.0.113.9:1234", "198.51.100.2:443", 0);
    let mut tls = tls_behind(proxy.tls_addr.unwrap(), &ca, header, true).await;
    let answer = exchange_over(&mut tls, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", "ok").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let conn = http_backend.conn(0).await;
    assert_eq!(conn.header("X-Forwarded-For"), ["203.0.113.9"]);
    assert_eq!(conn.header("X-Forwarded-Proto"), ["https"]);
    let want = (sa("203.0.113.9:1234"), sa("198.51.100.2:443"));
    assert_eq!(sent_header(&conn), Some(want));
    let m = metrics(&proxy).await;
    assert_eq!(
        sample(&m, "tidegate_tls_handshakes_total{version=\"tls1_3\"}"),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_expecting_a_proxy_header_closes_a_bare_client_hello() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let backend = Backend::start().await;
    let mut c = tls_config(&[backend.addr], &volume);
    c.proxy_protocol = ProxyProtocol::Any;
    let proxy = start_proxy(c);
    let refused = connect(proxy.tls_addr.unwrap(), HOST, ca.client_config()).await;
    assert!(refused.is_err(), "no handshake without the header");
    wait_until("the missing header counted", || async {
        let m = metrics(&proxy).await;
        sample(&m, "tidegate_bad_requests_total{reason=\"proxy_protocol\"}") == Some(1.0)
    })
    .await;
    let m = metrics(&proxy).await;
    assert_eq!(
        sample(&m, "tidegate_tls_handshakes_total{version=\"tls1_3\"}").unwrap_or(0.0),
        0.0,
        "{m}"
    );
    assert_eq!(backend.stats.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_learn_the_tls_client_and_its_socket_address_on_both_paths() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let ws_backend = Recording::upgrading().await;
    let http_backend = plain_backend().await;
    // No PROXY header in: the TLS socket's own addresses go into the one sent to backends.
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let case = format!("fast path {fast_path}");
        let mut c = tls_config(&[ws_backend.addr], &volume);
        c.websocket_fast_path = fast_path;
        c.backends.send_proxy_protocol = SendProxyProtocol::V2;
        let proxy = start_proxy(c);
        let addr = proxy.tls_addr.unwrap();
        let tls = connect(addr, HOST, ca.client_config()).await.unwrap();
        let local = tls.get_ref().0.local_addr().unwrap();
        websocket_over(tls, &[("X-Forwarded-Proto", "http")]).await;
        let conn = ws_backend.conn(i).await;
        assert_eq!(sent_header(&conn), Some((local, addr)), "{case}");
        assert_eq!(conn.header("X-Forwarded-For"), ["127.0.0.1"], "{case}");
        assert_eq!(conn.header("X-Forwarded-Proto"), ["https"], "{case}");
    }
    let mut c = tls_config(&[http_backend.addr], &volume);
    c.backends.send_proxy_protocol = SendProxyProtocol::V2;
    let proxy = start_proxy(c);
    let addr = proxy.tls_addr.unwrap();
    let mut tls = connect(addr, HOST, ca.client_config()).await.unwrap();
    let local = tls.get_ref().0.local_addr().unwrap();
    let get = "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: http\r\n\r\n";
    let answer = exchange_over(&mut tls, get, "ok").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let conn = http_backend.conn(0).await;
    assert_eq!(sent_header(&conn), Some((local, addr)));
    assert_eq!(conn.header("X-Forwarded-Proto"), ["https"]);
}

/// Forwarding headers a client claims.
const CLAIMED: [(&str, &str); 3] = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Proto", "http"),
    ("X-Real-IP", "6.6.6.6"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_over_tls_follow_trusted_proxies_on_both_paths() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    let backend = Recording::upgrading().await;
    let http_backend = plain_backend().await;
    let plain_get: String = CLAIMED.iter().fold(
        "GET / HTTP/1.1\r\nHost: t\r\n".to_owned(),
        |request, (name, value)| format!("{request}{name}: {value}\r\n"),
    ) + "\r\n";
    let mut n = 0;
    for trusted in [false, true] {
        // Untrusted: the claims are dropped, the client is the chain, the scheme is TLS's.
        // Trusted: the chain is extended, the proxy's own scheme and X-Real-IP kept.
        let (chain, proto, real_ip): (&str, &str, &[&str]) = if trusted {
            ("6.6.6.6, 127.0.0.1", "http", &["6.6.6.6"])
        } else {
            ("127.0.0.1", "https", &[])
        };
        for fast_path in [true, false] {
            let case = format!("trusted {trusted}, fast path {fast_path}");
            let mut c = tls_config(&[backend.addr], &volume);
            c.websocket_fast_path = fast_path;
            if trusted {
                c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            }
            let proxy = start_proxy(c);
            let tls = connect(proxy.tls_addr.unwrap(), HOST, ca.client_config()).await;
            websocket_over(tls.unwrap(), &CLAIMED).await;
            let conn = backend.conn(n).await;
            n += 1;
            assert_eq!(conn.header("X-Forwarded-For"), [chain], "{case}");
            assert_eq!(conn.header("X-Forwarded-Proto"), [proto], "{case}");
            assert_eq!(conn.header("X-Real-IP"), real_ip, "{case}");
        }
        let mut c = tls_config(&[http_backend.addr], &volume);
        if trusted {
            c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        }
        let proxy = start_proxy(c);
        let answer = exchange(proxy.tls_addr.unwrap(), &ca, &plain_get, "ok").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let conn = http_backend.conn(usize::from(trusted)).await;
        let case = format!("trusted {trusted}, plain HTTP");
        assert_eq!(conn.header("X-Forwarded-For"), [chain], "{case}");
        assert_eq!(conn.header("X-Forwarded-Proto"), [proto], "{case}");
        assert_eq!(conn.header("X-Real-IP"), real_ip, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_next_to_a_tls_one_tells_backends_http() {
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.leaf(&[HOST]));
    // Closing after each answer, so that pingora does not send the second request on the
    // first one's pooled connection.
    let close = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    let backend = Recording::start(vec![Step::Send(close)]).await;
    let mut c = tls_config(&[backend.addr], &volume);
    c.tls.as_mut().unwrap().listen = Some(loopback0());
    let proxy = start_proxy(c);
    let get = "GET /x HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: ftp\r\n\r\n";
    let answer = exchange(proxy.tls_addr.unwrap(), &ca, get, "ok").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_plain, answer) = open_raw(proxy.traffic_addr, get.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (secure, clear) = (backend.conn(0).await, backend.conn(1).await);
    assert_eq!(secure.header("X-Forwarded-Proto"), ["https"]);
    assert_eq!(clear.header("X-Forwarded-Proto"), ["http"]);
}
