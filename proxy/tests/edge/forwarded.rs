//! What backends are told, checked on the backend's side: no hop-by-hop headers, the client's
//! address in `X-Forwarded-For` and the scheme in `X-Forwarded-Proto`, spoofed forwarding
//! headers dropped unless the client is a trusted proxy — on the fast path and pingora's path.

use crate::support::recording::{Conn, Recording, Step};
use crate::support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A real WebSocket client's handshake, with hop-by-hop and spoofed headers added.
const ADDED: [(&str, &str); 12] = [
    ("Connection", "keep-alive, Upgrade, X-Secret"),
    ("X-Secret", "s"),
    ("Keep-Alive", "300"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Real-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6"),
    ("X-Forwarded-Proto", "https"),
    ("Cookie", "session=1"),
];

async fn websocket_with_headers(proxy: &tidegate_proxy::server::Running) {
    let mut request = format!("ws://{}/chat", proxy.traffic_addr)
        .into_client_request()
        .unwrap();
    for (name, value) in ADDED {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(resp.status(), 101);
    echo_once(&mut ws, "through").await;
}

fn plain_with_headers() -> String {
    let mut request = "GET /page HTTP/1.1\r\nHost: t\r\n".to_owned();
    for (name, value) in ADDED {
        let value = if name == "Connection" {
            "keep-alive, X-Secret"
        } else {
            value
        };
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request + "\r\n"
}

fn assert_no_hop_by_hop(conn: &Conn, case: &str) {
    for name in [
        "X-Secret",
        "Keep-Alive",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
    ] {
        assert!(
            conn.header(name).is_empty(),
            "{case}: {name} reached the backend:\n{}",
            conn.head()
        );
    }
    assert_eq!(
        conn.header("Cookie"),
        ["session=1"],
        "{case}: end-to-end headers pass"
    );
}

async fn plain_backend() -> Recording {
    Recording::start(vec![
        Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        Step::Record,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_learn_the_client_and_see_no_hop_by_hop_or_spoofed_headers() {
    let ws_backend = Recording::upgrading().await;
    let http_backend = plain_backend().await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let case = format!("fast path {fast_path}");
        let mut c = config(&[ws_backend.addr], 10);
        c.websocket_fast_path = fast_path;
        let proxy = start_proxy(c);
        websocket_with_headers(&proxy).await;
        let conn = ws_backend.conn(i).await;
        assert_no_hop_by_hop(&conn, &case);
        assert_eq!(conn.header("Connection"), ["Upgrade"], "{case}");
        assert_eq!(conn.header("Upgrade"), ["websocket"], "{case}");
        assert_eq!(conn.header("X-Forwarded-For"), ["127.0.0.1"], "{case}");
        assert_eq!(conn.header("X-Forwarded-Proto"), ["http"], "{case}");
        assert!(
            conn.header("X-Real-IP").is_empty() && conn.header("Forwarded").is_empty(),
            "{case}"
        );
    }
    let proxy = start_proxy(config(&[http_backend.addr], 10));
    let (_kept, answer) = open_raw(proxy.traffic_addr, plain_with_headers().as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let conn = http_backend.conn(0).await;
    assert_no_hop_by_hop(&conn, "plain HTTP");
    assert_eq!(conn.header("X-Forwarded-For"), ["127.0.0.1"]);
    assert_eq!(conn.header("X-Forwarded-Proto"), ["http"]);
    assert!(conn.header("X-Real-IP").is_empty() && conn.header("Forwarded").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_keeps_its_headers_and_has_the_client_appended() {
    let ws_backend = Recording::upgrading().await;
    let http_backend = plain_backend().await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let case = format!("fast path {fast_path}");
        let mut c = config(&[ws_backend.addr], 10);
        c.websocket_fast_path = fast_path;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        let proxy = start_proxy(c);
        websocket_with_headers(&proxy).await;
        let conn = ws_backend.conn(i).await;
        assert_eq!(
            conn.header("X-Forwarded-For"),
            ["6.6.6.6, 127.0.0.1"],
            "{case}"
        );
        assert_eq!(conn.header("X-Forwarded-Proto"), ["https"], "{case}");
        assert_eq!(conn.header("X-Real-IP"), ["6.6.6.6"], "{case}");
        assert_eq!(conn.header("Forwarded"), ["for=6.6.6.6"], "{case}");
        assert_no_hop_by_hop(&conn, &case);
    }
    let mut c = config(&[http_backend.addr], 10);
    c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let proxy = start_proxy(c);
    let (_kept, answer) = open_raw(proxy.traffic_addr, plain_with_headers().as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let conn = http_backend.conn(0).await;
    assert_eq!(conn.header("X-Forwarded-For"), ["6.6.6.6, 127.0.0.1"]);
    assert_eq!(conn.header("X-Real-IP"), ["6.6.6.6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_off_passes_them_through_untouched() {
    let backend = Recording::upgrading().await;
    for (i, fast_path) in [true, false].into_iter().enumerate() {
        let mut c = config(&[backend.addr], 10);
        c.websocket_fast_path = fast_path;
        c.forwarded_headers = false;
        let proxy = start_proxy(c);
        websocket_with_headers(&proxy).await;
        let conn = backend.conn(i).await;
        assert_eq!(
            conn.header("X-Forwarded-For"),
            ["6.6.6.6"],
            "fast path {fast_path}"
        );
        assert_eq!(conn.header("X-Real-IP"), ["6.6.6.6"]);
        assert_eq!(conn.header("X-Forwarded-Proto"), ["https"]);
        assert_no_hop_by_hop(&conn, &format!("fast path {fast_path}"));
    }
}
