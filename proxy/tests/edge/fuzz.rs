//! Property-based fuzzing (proptest, stable toolchain) of the parsers that read what strangers
//! send: the request-head reader and checker with the fast path's rewrite, the PROXY header
//! parser, and the config loader. No input may panic, hang past its deadline, or grow a buffer
//! past its bound; parsing must not depend on how the bytes were split across reads.
//!
//! CI runs proptest's default 256 cases per property (`PROPTEST_CASES` overrides). A longer run:
//! `PROPTEST_CASES=20000 cargo nextest run -p tidegate-proxy --test edge fuzz::`.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use tidegate_proxy::config::ProxyProtocol;
use tidegate_proxy::dataplane::client::{Forwarding, Proto};
use tidegate_proxy::dataplane::head::{self, rewrite};
use tidegate_proxy::dataplane::proxy_protocol;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The head reader's bound in these runs.
const MAX_HEAD: usize = 4096;

/// Pieces that request heads are made of, tricky ones included.
fn head_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET /chat HTTP/1.1\r\n".to_owned()),
        Just("POST / HTTP/1.0\r\n".to_owned()),
        Just("Host: t\r\n".to_owned()),
        Just("Upgrade: websocket\r\n".to_owned()),
        Just("Upgrade: h2c, WebSocket\r\n".to_owned()),
        Just("Connection: keep-alive, Upgrade, X-Secret\r\n".to_owned()),
        Just("Connection: host\r\n".to_owned()),
        Just("Content-Length: 0\r\n".to_owned()),
        Just("Content-Length: 12\r\n".to_owned()),
        Just("Content-Length: 1, 2\r\n".to_owned()),
        Just("Transfer-Encoding: chunked\r\n".to_owned()),
        Just("Transfer-Encoding: gzip\r\n".to_owned()),
        Just("X-Forwarded-For: 6.6.6.6\r\n".to_owned()),
        Just("Keep-Alive: 5\r\n".to_owned()),
        Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just(" \t:\r".to_owned()),
        "[ -~]{0,40}\r\n",
        proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Request-like byte strings: mostly well-formed pieces, sometimes raw noise.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(head_piece(), 1..16).prop_map(|p| p.concat().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..600),
        1 => Just(vec![b'a'; MAX_HEAD + 100]),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What the reader made of `bytes` written in chunks cut at `cuts`: `Ok(head length,
/// websocket)` or the error's metric label.
async fn read_split(bytes: &[u8], cuts: &[usize]) -> Result<(usize, bool), &'static str> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let chunks: Vec<Vec<u8>> = std::iter::once(0)
        .chain(points)
        .chain(std::iter::once(bytes.len()))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect();
    let writer = tokio::spawn(async move {
        for chunk in chunks {
            if client.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = client.shutdown().await;
        // Keep the socket open (half-closed) until the reader is done.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let read = head::read_request_from(&mut server, Vec::new(), MAX_HEAD, deadline).await;
    writer.abort();
    match read {
        Ok((h, request)) => {
            assert!(h.len <= h.bytes.len() && h.bytes.len() <= bytes.len());
            assert!(h.bytes.capacity() <= 2 * MAX_HEAD, "buffer past its bound");
            assert!(
                h.head().ends_with(b"\r\n\r\n"),
                "a head ends with CRLF CRLF"
            );
            if request.websocket {
                check_rewrite(h.head());
            }
            Ok((h.len, request.websocket))
        }
        Err(e) => Err(e.metric_label()),
    }
}

/// The fast path's rewrite of an accepted upgrade head: valid HTTP, one handshake pair, no
/// hop-by-hop header left, no larger than the sizing bound.
fn check_rewrite(client_head: &[u8]) {
    let forwarding = Forwarding {
        client: "2001:db8::1".parse().unwrap(),
        proto: Proto::Http,
        trusted: false,
    };
    let ends: (SocketAddr, SocketAddr) =
        ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    let out = rewrite::websocket(client_head, Some(ends), Some(&forwarding));
    let header = proxy_protocol::parse(&out, ProxyProtocol::V2)
        .unwrap()
        .unwrap();
    let sent = &out[header.len..];
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(sent) else {
        panic!(
            "the rewritten head does not parse: {:?}",
            String::from_utf8_lossy(sent)
        );
    };
    assert_eq!(len, sent.len());
    let count = |n: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .count()
    };
    assert_eq!(
        (
            count("connection"),
            count("upgrade"),
            count("x-forwarded-for")
        ),
        (1, 1, 1)
    );
    for hop in [
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "x-secret",
    ] {
        assert_eq!(
            count(hop),
            0,
            "{hop} left in {:?}",
            String::from_utf8_lossy(sent)
        );
    }
    assert!(out.len() <= client_head.len() + 300);
}

proptest! {
    #[test]
    fn request_heads_never_panic_and_do_not_depend_on_how_they_were_split(
        bytes in request_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let rt = runtime();
        let whole = rt.block_on(read_split(&bytes, &[]));
        let split = rt.block_on(read_split(&bytes, &cuts));
        // Splitting may only turn "too large" into "too large" and "closed" into "closed".
        prop_assert_eq!(whole, split, "{:?}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn the_checker_agrees_with_itself_on_any_parsed_head(bytes in request_bytes()) {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = req.parse(&bytes) {
            let first = head::check::request(&req, &bytes[..len]);
            let again = head::check::request(&req, &bytes[..len]);
            prop_assert_eq!(first.clone(), again);
            if let Ok(r) = first
                && r.websocket
            {
                check_rewrite(&bytes[..len]);
            }
        }
    }
}

/// PROXY headers: valid ones of both versions, then mutated or noise.
fn proxy_bytes() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u16>(),
    );
    let valid_v2 = v4.prop_map(|(s, d, sp, dp)| {
        let mut out = Vec::new();
        let src = SocketAddr::from((s, sp));
        proxy_protocol::write_v2(src, SocketAddr::from((d, dp)), &mut out);
        out
    });
    let valid_v1 = v4.prop_map(|(s, d, sp, dp)| {
        let ip = |b: [u8; 4]| std::net::Ipv4Addr::from(b).to_string();
        format!("PROXY TCP4 {} {} {sp} {dp}\r\n", ip(s), ip(d)).into_bytes()
    });
    let mutate = |v: Vec<u8>| {
        (Just(v), any::<usize>(), any::<u8>(), any::<bool>()).prop_map(|(mut v, i, b, cut)| {
            let at = i % v.len();
            if cut {
                v.truncate(at)
            } else {
                v[at] = b
            }
            v
        })
    };
    prop_oneof![
        valid_v2.clone(),
        valid_v1.clone(),
        valid_v2.prop_flat_map(mutate),
        valid_v1.prop_flat_map(mutate),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|tail| [
            &proxy_protocol::V2_SIGNATURE[..],
            &tail
        ]
        .concat()),
    ]
}

fn any_version() -> impl Strategy<Value = ProxyProtocol> {
    prop_oneof![
        Just(ProxyProtocol::V1),
        Just(ProxyProtocol::V2),
        Just(ProxyProtocol::Any)
    ]
}

proptest! {
    #[test]
    fn proxy_headers_parse_incrementally_and_never_panic(
        bytes in proxy_bytes(),
        extra in proptest::collection::vec(any::<u8>(), 0..32),
        accept in any_version(),
    ) {
        let result = proxy_protocol::parse(&bytes, accept);
        let more = [&bytes[..], &extra].concat();
        match result {
            Ok(Some(h)) => {
                prop_assert!(h.len <= bytes.len() && h.len <= proxy_protocol::MAX_HEADER);
                // The header is the same whatever follows it, and nothing before its end
                // is a complete header.
                prop_assert_eq!(proxy_protocol::parse(&more, accept), Ok(Some(h)));
                prop_assert_eq!(proxy_protocol::parse(&bytes[..h.len], accept), Ok(Some(h)));
                for cut in 0..h.len {
                    prop_assert_eq!(proxy_protocol::parse(&bytes[..cut], accept), Ok(None));
                }
            }
            // "Need more" never for more than a header's worth of bytes.
            Ok(None) => prop_assert!(bytes.len() < proxy_protocol::MAX_HEADER),
            // An error is final: more bytes do not make it a header.
            Err(e) => prop_assert_eq!(proxy_protocol::parse(&more, accept), Err(e)),
        }
    }

    #[test]
    fn written_v2_headers_read_back(
        src in any::<SocketAddr>(),
        dst in any::<SocketAddr>(),
    ) {
        let mut out = Vec::new();
        proxy_protocol::write_v2(src, dst, &mut out);
        let h = proxy_protocol::parse(&out, ProxyProtocol::V2).unwrap().unwrap();
        let (s, d) = h.addresses.unwrap();
        prop_assert_eq!((s.ip().to_canonical(), s.port()), (src.ip().to_canonical(), src.port()));
        prop_assert_eq!((d.ip().to_canonical(), d.port()), (dst.ip().to_canonical(), dst.port()));
    }
}

/// Config-like YAML: known keys with plausible and implausible values, anchors and aliases,
/// flow and block styles, then raw mutations.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("listen"),
        Just("queue_timeout"),
        Just("backends"),
        Just("static"),
        Just("tcp_keepalive"),
        Just("idle"),
        Just("count"),
        Just("trusted_proxies"),
        Just("proxy_protocol"),
        Just("forwarded_headers"),
        Just("scaler"),
        Just("policy"),
        Just("max_connections_per_backend"),
        Just("send_proxy_protocol"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("127.0.0.1:0".to_owned()),
        Just("5s".to_owned()),
        Just("off".to_owned()),
        Just("v2".to_owned()),
        Just("[10.0.0.0/8, ::/0]".to_owned()),
        Just("{idle: 1s}".to_owned()),
        Just("&a [1, 2, *a]".to_owned()),
        Just("*a".to_owned()),
        Just("!!binary aGk=".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("~".to_owned()),
        "[ -~]{0,20}",
    ];
    let line = (0..4usize, key, value)
        .prop_map(|(indent, k, v)| format!("{}{k}: {v}\n", "  ".repeat(indent)));
    let doc = proptest::collection::vec(line, 0..12).prop_map(|l| l.concat());
    prop_oneof![
        4 => doc,
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #[test]
    fn the_config_loader_never_panics(text in config_text()) {
        let started = std::time::Instant::now();
        let _ = tidegate_proxy::config::parse(&text, "fuzz.yaml");
        prop_assert!(started.elapsed() < Duration::from_secs(2), "slow on {text:?}");
    }
}

#[test]
fn alias_bombs_and_oversized_files_are_refused_quickly() {
    // Billion laughs: 8^11 strings if every alias were expanded.
    let mut yaml = "trusted_proxies: &a0 [\"10.0.0.0/8\", \"10.0.0.0/8\"]\n".to_owned();
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        yaml += &format!("x{i}: &a{i} [{}]\n", vec![prev; 8].join(", "));
    }
    yaml = yaml.replace("trusted_proxies", "x0") + "backends: {static: *a11}\n";
    let started = std::time::Instant::now();
    let err = tidegate_proxy::config::parse(&yaml, "laughs.yaml").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}: {err}",
        started.elapsed()
    );
    // The budget is in force: a valid file with more aliases than a config needs (here 1,800;
    // the parser's general default allows 50,000) is refused. Each anchor is aliased 9 times,
    // under the parser's alias-to-anchor ratio check.
    let aliases = |anchors: usize| {
        let items: Vec<String> = (0..anchors)
            .map(|j| {
                format!(
                    "&a{j} \"10.0.0.0/8\", {}",
                    vec![format!("*a{j}"); 9].join(", ")
                )
            })
            .collect();
        format!("trusted_proxies: [{}]\n", items.join(", "))
    };
    let ok = tidegate_proxy::config::parse(&aliases(100), "few.yaml");
    assert_eq!(ok.unwrap().trusted_proxies.len(), 1000);
    let err = tidegate_proxy::config::parse(&aliases(200), "many.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("many.yaml") && err.contains("budget"), "{err}");
    let big = "listen: 127.0.0.1:0\n".to_owned() + &"# padding\n".repeat(200_000);
    let err = tidegate_proxy::config::parse(&big, "big.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("big.yaml") && err.contains("larger than"),
        "{err}"
    );
}
