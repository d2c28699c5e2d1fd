//! The exchange over the admin listener: `POST /api/v1/peer/sync` with a binary report
//! (`tidegate_common::share::wire`) as the body, answered `204 No Content` — or `410 Gone` when
//! the receiver has dropped the sender — with the receiver's incarnation in `Tidegate-Member`,
//! which tells a pusher who is at an address (and that a contact is itself).
//!
//! Both ends are bounded: the pusher's whole call (connect, send, answer) within
//! `peers.call_timeout`; the receiver's body within `MAX_REPORT_BYTES` and the admin
//! listener's header timeout. A bad body is answered 400 and counted, never applied.

use std::net::SocketAddr;
use std::time::Duration;

use tidegate_common::share::node::Received;
use tidegate_common::share::{MemberId, wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Peers;
use crate::dataplane::head::{self, Head};

/// The path reports are pushed to.
pub const PATH: &str = "/api/v1/peer/sync";
/// The answer header naming the receiver's incarnation (16 hex digits).
pub const MEMBER_HEADER: &str = "Tidegate-Member";
/// Largest answer head a pusher reads.
const MAX_ANSWER_HEAD: usize = 4096;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No TCP connection (refused, unreachable).
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// Not done within `peers.call_timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed midway.
    #[error("exchange failed: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not a valid exchange answer.
    #[error("bad answer: {0}")]
    Answer(String),
}

impl Error {
    /// A bounded label for `tidegate_peer_sync_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Io(_) => "io",
            Self::Answer(_) => "bad_answer",
        }
    }
}

/// What a peer answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Its incarnation.
    pub member: MemberId,
    /// It has dropped us (410): we start again as a new member.
    pub dropped_us: bool,
}

/// Pushes one encoded report to `address` within `timeout`.
pub async fn push(address: SocketAddr, body: &[u8], timeout: Duration) -> Result<Answer, Error> {
    let call = async {
        let mut stream = TcpStream::connect(address).await.map_err(Error::Connect)?;
        let head = format!(
            "POST {PATH} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let (head, response) =
            head::read_response(&mut stream, Vec::new(), MAX_ANSWER_HEAD, deadline)
                .await
                .map_err(|e| Error::Answer(e.to_string()))?;
        let member = header(&head, MEMBER_HEADER, false)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .ok_or_else(|| Error::Answer(format!("status {} without a member", response.status)))?;
        match response.status {
            204 => Ok(Answer {
                member,
                dropped_us: false,
            }),
            410 => Ok(Answer {
                member,
                dropped_us: true,
            }),
            other => Err(Error::Answer(format!("status {other}"))),
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

/// Serves one `POST /api/v1/peer/sync` whose head was read into `head`; `peer` is the TCP
/// source (its IP with the report's admin port is where to push back).
pub async fn serve(
    peers: &Peers,
    mut stream: TcpStream,
    head: Head,
    peer: SocketAddr,
    timeout: Duration,
) {
    let me = peers.me();
    let length = header(&head, "content-length", true).and_then(|v| v.trim().parse::<usize>().ok());
    let Some(length) = length else {
        peers.metrics.bad_report("no_length");
        return answer(&mut stream, 411, "Length Required", me).await;
    };
    if length > wire::MAX_REPORT_BYTES {
        peers.metrics.bad_report("too_large");
        return answer(&mut stream, 413, "Content Too Large", me).await;
    }
    let mut body = head.bytes[head.len..].to_vec();
    let rest = length.saturating_sub(body.len());
    // Grows as bytes arrive: a length announced but not sent costs nothing.
    let mut limited = (&mut stream).take(rest as u64);
    let read = limited.read_to_end(&mut body);
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(_)) if body.len() >= length => body.truncate(length),
        Ok(_) => return peers.metrics.bad_report("truncated"),
        Err(_) => return peers.metrics.bad_report("body_timeout"),
    }
    peers.metrics.bytes("received", body.len());
    let report = match wire::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            peers.metrics.bad_report(e.metric_label());
            return answer(&mut stream, 400, "Bad Request", me).await;
        }
    };
    let source = (report.admin_port != 0).then(|| SocketAddr::new(peer.ip(), report.admin_port));
    match peers.receive(report, source) {
        Received::Dropped => answer(&mut stream, 410, "Gone", me).await,
        Received::Fresh | Received::Stale | Received::Myself => {
            answer(&mut stream, 204, "No Content", me).await;
        }
    }
}

async fn answer(stream: &mut TcpStream, status: u16, reason: &str, me: MemberId) {
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\n{MEMBER_HEADER}: {me:016x}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let write = async {
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}

/// The value of header `name` in a request (`request: true`) or response head.
fn header(head: &Head, name: &str, request: bool) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let bytes = &head.bytes[..head.len];
    let parsed = if request {
        let mut r = httparse::Request::new(&mut headers);
        r.parse(bytes).ok().map(|_| r.headers.to_vec())
    } else {
        let mut r = httparse::Response::new(&mut headers);
        r.parse(bytes).ok().map(|_| r.headers.to_vec())
    }?;
    let h = parsed.iter().find(|h| h.name.eq_ignore_ascii_case(name))?;
    std::str::from_utf8(h.value).ok().map(str::to_owned)
}
