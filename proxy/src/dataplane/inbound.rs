//! What a new client connection goes through before it is routed, all within
//! `request_header_timeout` from accept: the PROXY header when `proxy_protocol` asks for one
//! ([`arrive`], on the TCP socket; its options, no Nagle and TCP keepalive, it has from the
//! listener, [`super::inherited`]); on a TLS listener the handshake then (`crate::tls`, fed the
//! bytes read after the PROXY header); and its first request head over either stream
//! ([`open`]). Bad input is answered (400, 408, 431)
//! or, for a missing or malformed PROXY header, the connection is closed; either way it is
//! counted in `tidegate_bad_requests_total`.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::client::{Client, Proto};
use super::head::{self, Head, Request};
use super::transport::Transport;
use super::{Proxy, proxy_protocol, respond};
use crate::config::{Config, ProxyProtocol};

/// First read of a PROXY header: room for a v1 header or a v2 one with a few TLVs.
const PROXY_FIRST_READ: usize = 256;

/// A TCP connection set up and past its PROXY header.
pub struct Arrival {
    /// Who it is from (its scheme is settled by the stream its head is read from).
    pub client: Client,
    /// The bytes read after the PROXY header: the start of the first head, or of a TLS
    /// ClientHello.
    pub already: Vec<u8>,
    /// When its first head must be complete.
    pub deadline: Instant,
}

/// A connection ready to be routed.
pub struct Opened {
    /// Who it is from.
    pub client: Client,
    /// Its first request head, and whatever followed in the same reads.
    pub head: Head,
    /// What routing needs from that head.
    pub request: Request,
}

/// Sets up `stream` from `peer` and reads its PROXY header if one is expected; `None` once it
/// has been closed for a missing or bad one (counted).
pub async fn arrive(
    proxy: &Proxy,
    config: &Config,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Option<Arrival> {
    let deadline = Instant::now() + config.request_header_timeout;
    let mut arrival = Arrival {
        client: Client {
            addr: peer,
            local: None,
            proto: Proto::Http,
        },
        already: Vec::new(),
        deadline,
    };
    if config.proxy_protocol != ProxyProtocol::Off {
        match read_proxy_header(stream, config.proxy_protocol, deadline).await {
            Ok((addresses, rest)) => {
                if let Some((src, dst)) = addresses {
                    (arrival.client.addr, arrival.client.local) = (src, Some(dst));
                }
                arrival.already = rest;
            }
            Err(e) => {
                debug!(%peer, error = %e, "no valid PROXY header; closing");
                count(proxy, e.metric_label());
                // Shut in a turn, like every refusal (`super::turns`).
                let _turn = proxy.refusals.turn().await;
                let _ = stream.shutdown().await;
                return None;
            }
        }
    }
    Some(arrival)
}

/// Reads the first request of `arrival` from `stream` (its TCP socket, or the TLS stream over
/// it); `None` once it has been answered or closed for bad input (counted).
pub async fn open<S: Transport>(
    proxy: &Proxy,
    config: &Config,
    stream: &mut S,
    arrival: Arrival,
) -> Option<Opened> {
    let Arrival {
        mut client,
        already,
        deadline,
    } = arrival;
    client.proto = S::PROTO;
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
            // Answered and shut in a turn: head timeouts come in bursts (`super::turns`).
            let _turn = proxy.refusals.turn().await;
            if let Some((code, reason)) = e.status() {
                respond::simple(stream, code, reason, &[], &format!("{e}\n")).await;
            }
            let _ = tokio::time::timeout(respond::WRITE_TIMEOUT, stream.shutdown()).await;
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
