//! The head the fast path sends to a backend in place of the client's: the same request line
//! and end-to-end headers, without hop-by-hop headers (as pingora's path strips them), with the
//! handshake's own `Connection: Upgrade` / `Upgrade: websocket`, and with the forwarding headers
//! of [`Forwarding`].
//!
//! This runs once per upgrade on the hot path, so it is built into one `Vec` sized once (an
//! optional PROXY header in front included), with no allocation per header: names and values
//! are copied as byte slices of the client's head, and the client's address is formatted
//! straight into the buffer.

use std::net::SocketAddr;

use super::MAX_HEADERS;
use super::check::has_token;
use crate::dataplane::client::{Forwarding, Incoming};
use crate::dataplane::proxy_protocol;

/// Headers that describe one hop and are never forwarded. `Transfer-Encoding` never reaches
/// here on an upgrade (it is refused as a body); `Content-Length: 0` is end-to-end and kept.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// What the proxy adds, and an upper bound of its length: the handshake headers, then
/// `X-Forwarded-For: <chain>, <address>` and `X-Forwarded-Proto: https`, then the blank line.
/// The client's own `X-Forwarded-For` values move into the one header the proxy writes, which
/// is never longer than the headers they came in, so this bound covers every case.
const HANDSHAKE: &[u8] = b"Connection: Upgrade\r\nUpgrade: websocket\r\n";
const ADDED_MAX: usize = HANDSHAKE.len() + 128;

/// The bytes to send a backend for a WebSocket upgrade whose checked client head is `head`:
/// a PROXY v2 header for `proxy_header`'s (source, destination) if given, then the rewritten
/// head. `forwarding: None` passes forwarding headers as the client sent them.
pub fn websocket(
    head: &[u8],
    proxy_header: Option<(SocketAddr, SocketAddr)>,
    forwarding: Option<&Forwarding>,
) -> Vec<u8> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let prefix = proxy_header.map_or(0, |_| proxy_protocol::V2_WRITTEN_MAX);
    let mut out = Vec::with_capacity(prefix + head.len() + ADDED_MAX);
    if let Some((src, dst)) = proxy_header {
        proxy_protocol::write_v2(src, dst, &mut out);
    }
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        // Checked heads always parse; if one did not, it goes as it came.
        out.extend_from_slice(head);
        return out;
    }
    let line = head.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    out.extend_from_slice(&head[..line]);
    let nominated = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .any(|h| has_token(h.value, name))
    };
    let mut proto_sent = false;
    for h in req.headers.iter() {
        if HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) || nominated(h.name) {
            continue;
        }
        match forwarding.map_or(Incoming::Keep, |f| f.treat(h.name.as_bytes())) {
            Incoming::Chain | Incoming::Drop => continue,
            Incoming::KeepProto => proto_sent = true,
            Incoming::Keep => {}
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(HANDSHAKE);
    if let Some(f) = forwarding {
        out.extend_from_slice(b"X-Forwarded-For: ");
        let chain = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|h| h.value);
        f.write_chain(chain, &mut out);
        out.extend_from_slice(b"\r\n");
        if !proto_sent {
            out.extend_from_slice(b"X-Forwarded-Proto: ");
            out.extend_from_slice(f.proto.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::dataplane::client::Proto;

    const CLIENT: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 300\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
        Trailer: X\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\
        X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\
        X-Forwarded-Proto: https\r\nCookie: a=b\r\n\r\n";

    fn forwarding(trusted: bool) -> Forwarding {
        Forwarding {
            client: "203.0.113.7".parse::<IpAddr>().unwrap(),
            proto: Proto::Http,
            trusted,
        }
    }

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn hop_by_hop_headers_go_and_the_handshake_and_identity_come() {
        let out = text(websocket(CLIENT.as_bytes(), None, Some(&forwarding(false))));
        assert_eq!(
            out,
            "GET /chat?room=1 HTTP/1.1\r\nHost: example\r\nSec-WebSocket-Key: k\r\n\
             Sec-WebSocket-Version: 13\r\nCookie: a=b\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn a_trusted_proxy_keeps_its_headers_and_its_chain_grows() {
        let out = text(websocket(CLIENT.as_bytes(), None, Some(&forwarding(true))));
        assert!(
            out.contains("X-Real-IP: 6.6.6.6\r\n") && out.contains("Forwarded: for=6.6.6.6\r\n")
        );
        assert!(
            out.contains("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Forwarded-Proto: https\r\n") && !out.contains("Proto: http\r\n"));
    }

    #[test]
    fn without_forwarding_the_identity_headers_pass_untouched() {
        let out = text(websocket(CLIENT.as_bytes(), None, None));
        assert!(out.starts_with("GET /chat?room=1 HTTP/1.1\r\n"));
        assert!(
            out.contains("X-Forwarded-For: 6.6.6.6\r\n") && out.contains("X-Real-IP: 6.6.6.6\r\n")
        );
        assert!(!out.contains("Keep-Alive") && !out.contains("X-Secret"));
    }

    #[test]
    fn the_buffer_is_sized_once() {
        for trusted in [false, true] {
            let long_chain = format!(
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n{}\r\n",
                "X-Forwarded-For: 1.1.1.1\r\n".repeat(40)
            );
            for head in [
                CLIENT,
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
                &long_chain,
            ] {
                let f = Forwarding {
                    client: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
                    proto: Proto::Https,
                    trusted,
                };
                let ends = (
                    "[2001:db8::1]:1".parse().unwrap(),
                    "10.0.0.1:2".parse().unwrap(),
                );
                let out = websocket(head.as_bytes(), Some(ends), Some(&f));
                let sized = proxy_protocol::V2_WRITTEN_MAX + head.len() + ADDED_MAX;
                assert_eq!(out.capacity(), sized, "{head:?}");
                assert!(out.starts_with(&proxy_protocol::V2_SIGNATURE));
            }
        }
    }
}
