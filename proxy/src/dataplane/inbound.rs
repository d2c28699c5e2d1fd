//! What a new client connection goes through before it is routed: its socket options (no
//! Nagle, TCP keepalive), the PROXY header when `proxy_protocol` asks for one, and its first
//! request head — all within `request_header_timeout`. Bad input is answered (400, 408, 431) or,
//! for a missing or malformed PROXY header, the connection is closed; either way it is counted
//! in `tidegate_bad_requests_total`.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::client::{Client, Proto};
use super::head::{self, Head, Request};
use super::{Proxy, proxy_protocol, respond};
use crate::config::{Config, Keepalive, ProxyProtocol};

/// First read of a PROXY header: room for a v1 header or a v2 one with a few TLVs.
const PROXY_FIRST_READ: usize = 256;

/// A connection ready to be routed.
pub struct Opened {
    /// Who it is from.
    pub client: Client,
    /// Its first request head, and whatever followed in the same reads.
    pub head: Head,
    /// What routing needs from that head.
    pub request: Request,
}

/// Sets up `stream` from `peer` and reads its first request; `None` once it has been answered
/// or closed for bad input (counted).
pub async fn open(
    proxy: &Proxy,
    config: &Config,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Option<Opened> {
    let _ = stream.set_nodelay(true);
    set_keepalive(stream, config.tcp_keepalive);
    let deadline = Instant::now() + config.request_header_timeout;
    let mut client = Client {
        addr: peer,
        local: None,
        proto: Proto::Http,
    };
    let mut already = Vec::new();
    if config.proxy_protocol != ProxyProtocol::Off {
        match read_proxy_header(stream, config.proxy_protocol, deadline).await {
            Ok((addresses, rest)) => {
                if let Some((src, dst)) = addresses {
                    (client.addr, client.local) = (src, Some(dst));
                }
                already = rest;
            }
            Err(e) => {
                debug!(%peer, error = %e, "no valid PROXY header; closing");
                count(proxy, e.metric_label());
                return None;
            }
        }
    }
    let max = config.max_request_header_bytes;
    match head::read_request_from(stream, already, max, deadline).await {
        Ok((head, request)) => Some(Opened {
            client,
            head,
            request,
        }),
        Err(e) => {
            debug!(peer = %client.addr, error = %e, "bad request head");
            count(proxy, e.metric_label());
            if let Some((code, reason)) = e.status() {
                respond::simple(stream, code, reason, &[], &format!("{e}\n")).await;
            }
            None
        }
    }
}

fn count(proxy: &Proxy, reason: &str) {
    proxy
        .metrics
        .bad_requests
        .with_label_values(&[reason])
        .inc();
}

/// Turns on TCP keepalive with `keepalive`'s timings (or leaves it off). A socket that refuses
/// the option is served anyway.
pub fn set_keepalive(stream: &TcpStream, keepalive: Keepalive) {
    let Some(k) = keepalive.0 else { return };
    let settings = socket2::TcpKeepalive::new()
        .with_time(k.idle)
        .with_interval(k.interval)
        .with_retries(k.count);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&settings) {
        debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Why no PROXY header could be read.
#[derive(Debug, thiserror::Error)]
enum ProxyHeaderError {
    /// Not a PROXY header of an accepted version.
    #[error(transparent)]
    Invalid(#[from] proxy_protocol::Error),
    /// The head reader's errors (closed, timed out, failed), before or during the header.
    #[error(transparent)]
    Read(#[from] head::Error),
    /// Bytes arrived, but not a whole header: closed or timed out in the middle of it.
    #[error("incomplete PROXY header: {0}")]
    Incomplete(head::Error),
}

impl ProxyHeaderError {
    /// A connection that sent nothing is counted as any silent connection is; one that sent
    /// something other than a whole, valid header as `proxy_protocol`.
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Read(e) => e.metric_label(),
            Self::Invalid(_) | Self::Incomplete(_) => "proxy_protocol",
        }
    }
}

/// Reads a PROXY header by `deadline`; returns its addresses and the bytes read after it.
async fn read_proxy_header(
    stream: &mut TcpStream,
    accept: ProxyProtocol,
    deadline: Instant,
) -> Result<(Option<(SocketAddr, SocketAddr)>, Vec<u8>), ProxyHeaderError> {
    let mut buf = Vec::new();
    let work = async {
        stream.readable().await.map_err(head::Error::Io)?;
        buf.reserve_exact(PROXY_FIRST_READ);
        loop {
            let n = stream.read_buf(&mut buf).await.map_err(head::Error::Io)?;
            if n == 0 {
                return Err(head::Error::Closed.into());
            }
            if let Some(header) = proxy_protocol::parse(&buf, accept)? {
                buf.drain(..header.len);
                return Ok((header.addresses, std::mem::take(&mut buf)));
            }
            if buf.len() == buf.capacity() {
                buf.reserve(proxy_protocol::MAX_HEADER - buf.len());
            }
        }
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    let result = tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or(Err(head::Error::Timeout(timeout).into()));
    match result {
        Err(ProxyHeaderError::Read(e)) if !buf.is_empty() => Err(ProxyHeaderError::Incomplete(e)),
        other => other,
    }
}
