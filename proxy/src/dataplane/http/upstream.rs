//! pingora's side of a backend connection: the peer with its options (connect timeout, TCP
//! keepalive, the PROXY v2 header of `backends.send_proxy_protocol`), the forwarding headers on
//! the upstream request, and telling the proxy's own descriptor exhaustion from a backend's
//! failure.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::TcpKeepalive;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::{Config, SendProxyProtocol};
use crate::dataplane::client::{Client, Forwarding, Incoming};
use crate::dataplane::proxy_protocol;
use crate::dataplane::tunnel::is_out_of_descriptors;

/// The peer for one request to `backend` from `client`.
///
/// With `send_proxy_protocol: v2`, every new connection opens with a PROXY header naming
/// `client`, and its `group_key` is the client address, so pingora's keepalive pool only ever
/// reuses a connection for the client its header names.
pub fn peer(config: &Config, backend: SocketAddr, client: Option<&Client>) -> HttpPeer {
    let mut peer = HttpPeer::new(backend, false, String::new());
    peer.options.connection_timeout = Some(config.connect_timeout);
    if let Some(k) = config.tcp_keepalive.0 {
        peer.options.tcp_keepalive = Some(TcpKeepalive {
            idle: k.idle,
            interval: k.interval,
            count: k.count as usize,
            #[cfg(target_os = "linux")]
            user_timeout: Duration::ZERO,
        });
    }
    if let (SendProxyProtocol::V2, Some(c)) = (config.backends.send_proxy_protocol, client) {
        let mut header = Vec::with_capacity(proxy_protocol::V2_WRITTEN_MAX);
        proxy_protocol::write_v2(c.addr, c.local.unwrap_or(c.addr), &mut header);
        peer.options.custom_l4 = Some(std::sync::Arc::new(WithProxyHeader {
            header,
            timeout: config.connect_timeout,
        }));
        let mut hash = std::hash::DefaultHasher::new();
        c.addr.hash(&mut hash);
        peer.group_key = hash.finish();
    }
    peer
}

/// Connects, then writes a PROXY header before pingora's first byte.
#[derive(Debug)]
struct WithProxyHeader {
    header: Vec<u8>,
    timeout: Duration,
}

#[async_trait]
impl L4Connect for WithProxyHeader {
    async fn connect(&self, addr: &PeerAddr) -> Result<L4Stream> {
        let Some(&inet) = addr.as_inet() else {
            return Error::e_explain(ErrorType::ConnectError, "not an IP backend");
        };
        let connecting = tokio::time::timeout(self.timeout, TcpStream::connect(inet));
        let mut stream = match connecting.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                    _ => ErrorType::ConnectError,
                };
                return Error::e_because(kind, "connecting to the backend", e);
            }
            Err(_) => return Error::e_explain(ErrorType::ConnectTimedout, "connect timed out"),
        };
        if let Err(e) = stream.write_all(&self.header).await {
            return Error::e_because(ErrorType::ConnectError, "writing the PROXY header", e);
        }
        Ok(L4Stream::from(stream))
    }
}

/// Sets `X-Forwarded-For` and `X-Forwarded-Proto` on `req` and drops the client's own
/// forwarding headers unless it is trusted — the same rules as the fast path's head.
pub fn forward(req: &mut RequestHeader, forwarding: &Forwarding) -> Result<()> {
    let mut chain = Vec::with_capacity(64);
    let sent = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes());
    forwarding.write_chain(sent, &mut chain);
    let mut proto_sent = false;
    for name in ["x-real-ip", "forwarded", "x-forwarded-proto"] {
        match forwarding.treat(name.as_bytes()) {
            Incoming::Drop => drop(req.remove_header(name)),
            Incoming::KeepProto => proto_sent = req.headers.contains_key(name),
            Incoming::Keep | Incoming::Chain => {}
        }
    }
    let value = http::HeaderValue::from_bytes(&chain)
        .map_err(|e| Error::because(ErrorType::InternalError, "X-Forwarded-For", e))?;
    req.insert_header("X-Forwarded-For", value)?;
    if !proto_sent {
        req.insert_header("X-Forwarded-Proto", forwarding.proto.as_str())?;
    }
    Ok(())
}

/// The status pingora's own `fail_to_proxy` answers `e` with (0: the client is gone).
pub fn error_status(e: &Error) -> u16 {
    use pingora::ErrorSource;
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (_, ErrorSource::Upstream) => 502,
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => 0,
        (_, ErrorSource::Downstream) => 400,
        (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
    }
}

/// Whether a pingora connect error came from this process (or the system) running out of
/// descriptors: pingora nests its errors (`InternalError` because of `SocketError` because of
/// the `io::Error`); the I/O error is at the root, possibly under a wrapper of its own.
pub fn out_of_descriptors(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(is_out_of_descriptors)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_is_found_under_pingoras_wrapping() {
        // As pingora's connector reports a socket() failure: InternalError because of
        // SocketError because of the io::Error.
        let emfile = std::io::Error::from_raw_os_error(nix::libc::EMFILE);
        let inner = Error::because(ErrorType::SocketError, "failed to create socket", emfile);
        let outer = Error::because(ErrorType::InternalError, "Fail to connect", inner);
        assert!(out_of_descriptors(&outer));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let other = Error::because(ErrorType::ConnectRefused, "refused", refused);
        assert!(!out_of_descriptors(&other));
        assert!(!out_of_descriptors(&Error::new(ErrorType::ConnectTimedout)));
    }

    #[test]
    fn forwarding_headers_on_pingoras_request_follow_the_fast_paths_rules() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in [
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
        ] {
            req.append_header(n, v).unwrap();
        }
        let untrusted = Forwarding {
            client: "203.0.113.7".parse().unwrap(),
            proto: crate::dataplane::client::Proto::Http,
            trusted: false,
        };
        forward(&mut req, &untrusted).unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "203.0.113.7");
        assert_eq!(req.headers["x-forwarded-proto"], "http");
        assert!(req.headers.get("x-real-ip").is_none());
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "198.51.100.1")
            .unwrap();
        req.append_header("X-Forwarded-For", "10.0.0.9").unwrap();
        req.append_header("X-Forwarded-Proto", "https").unwrap();
        let trusted = Forwarding {
            trusted: true,
            ..untrusted
        };
        forward(&mut req, &trusted).unwrap();
        assert_eq!(
            req.headers["x-forwarded-for"],
            "198.51.100.1, 10.0.0.9, 203.0.113.7"
        );
        assert_eq!(req.headers["x-forwarded-proto"], "https");
    }
}
