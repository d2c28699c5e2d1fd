//! Reading an HTTP/1.x message head off a socket, bounded in size and time, and deciding
//! whether a request is a WebSocket upgrade. [`check`] holds the rules every request head must
//! follow (framing, line endings, `Host`); [`rewrite`] builds the head the fast path forwards.
//!
//! The buffer grows from 1 KiB only as bytes arrive, and nothing is allocated before the first
//! byte: a connection that sits silent costs no buffer.

pub mod check;
pub mod rewrite;

use std::io;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use check::Invalid;

use super::transport::Transport;

/// Most header lines parsed in one head.
pub(crate) const MAX_HEADERS: usize = 100;
const FIRST_READ: usize = 1024;

/// Why no request head could be read. Each maps to one status code (or none).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not valid HTTP/1.x → 400.
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// Valid HTTP/1.x that breaks one of [`check`]'s rules → 400.
    #[error("refused request head: {0}")]
    Invalid(#[from] Invalid),
    /// Longer than the limit, or too many header lines → 431.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// Not complete within the header timeout → 408.
    #[error("request head not complete within {0:?}")]
    Timeout(Duration),
    /// The peer closed before sending a whole head: nobody to answer.
    #[error("connection closed before a complete head")]
    Closed,
    /// The socket failed.
    #[error("reading the head failed: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The status to answer with, if any.
    pub fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::Malformed(_) | Self::Invalid(_) => Some((400, "Bad Request")),
            Self::TooLarge(_) => Some((431, "Request Header Fields Too Large")),
            Self::Timeout(_) => Some((408, "Request Timeout")),
            Self::Closed | Self::Io(_) => None,
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::Invalid(why) => why.metric_label(),
            Self::TooLarge(_) => "header_too_large",
            Self::Timeout(_) => "header_timeout",
            Self::Closed => "closed_early",
            Self::Io(_) => "client_io_error",
        }
    }
}

/// A complete head, and whatever followed it in the same reads.
#[derive(Debug)]
pub struct Head {
    /// Every byte read so far: the head, then possibly the start of what follows it.
    pub bytes: Vec<u8>,
    /// Length of the head within `bytes`.
    pub len: usize,
}

impl Head {
    /// The head itself.
    pub fn head(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// What followed the head in the same reads (pipelined bytes).
    pub fn tail(&self) -> &[u8] {
        &self.bytes[self.len..]
    }
}

/// The parts of a request head routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// An HTTP/1.1 request with `Upgrade: websocket` (see [`check::request`]).
    pub websocket: bool,
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/metrics?x=1`.
    pub target: String,
}

/// Reads a request head within `timeout` and `max` bytes, checks it, and says whether it is a
/// WebSocket upgrade.
pub async fn read_request<S: Transport>(
    stream: &mut S,
    max: usize,
    timeout: Duration,
) -> Result<(Head, Request), Error> {
    read_request_from(stream, Vec::new(), max, Instant::now() + timeout).await
}

/// As [`read_request`], starting with bytes already read (what followed a PROXY header) and
/// ending at `deadline`.
pub async fn read_request_from<S: Transport>(
    stream: &mut S,
    already: Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<(Head, Request), Error> {
    let parse = |buf: &[u8]| -> Result<Option<(usize, Request)>, Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                Ok(Some((len, check::request(&req, &buf[..len])?)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(Error::TooLarge(max)),
            Err(_) => Err(Error::Malformed("not an HTTP/1.x request")),
        }
    };
    read_head(stream, already, max, deadline, parse).await
}

/// The parts of a response head the proxy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, if given.
    pub content_length: Option<u64>,
}

/// Reads a response head by `deadline`, starting with bytes already read (what followed an
/// interim response).
pub async fn read_response(
    stream: &mut TcpStream,
    already: Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<(Head, Response), Error> {
    let parse = |buf: &[u8]| -> Result<Option<(usize, Response)>, Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let length = header(resp.headers, "content-length")
                    .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
                let info = Response {
                    status: resp.code.unwrap_or(0),
                    content_length: length,
                };
                Ok(Some((len, info)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(Error::Malformed("not an HTTP/1.x response")),
        }
    };
    read_head(stream, already, max, deadline, parse).await
}

/// Reads until `parse` finds a whole head in the buffer (which starts as `already`), at most
/// `max` bytes, by `deadline`.
async fn read_head<S: Transport, T>(
    stream: &mut S,
    already: Vec<u8>,
    max: usize,
    deadline: Instant,
    parse: impl Fn(&[u8]) -> Result<Option<(usize, T)>, Error>,
) -> Result<(Head, T), Error> {
    let work = async {
        let mut bytes = already;
        if !bytes.is_empty() {
            if let Some((len, parsed)) = parse(&bytes)? {
                return Ok((Head { bytes, len }, parsed));
            }
        } else {
            stream.ready().await?;
            bytes.reserve_exact(FIRST_READ.min(max));
        }
        loop {
            if bytes.len() >= max {
                return Err(Error::TooLarge(max));
            }
            if bytes.len() == bytes.capacity() {
                bytes.reserve((bytes.capacity()).min(max.saturating_sub(bytes.len()).max(1)));
            }
            if stream.read_buf(&mut bytes).await? == 0 {
                return Err(Error::Closed);
            }
            if let Some((len, parsed)) = parse(&bytes)? {
                return Ok((Head { bytes, len }, parsed));
            }
        }
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

fn header<'a>(headers: &'a [httparse::Header<'_>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}
